"""`python -m tamc_codec.train ...` (what torchrun launches) runs `tamc train ...`."""
import sys

from ..cli import main

main(["train", *sys.argv[1:]])
