"""`python -m tamc_codec.train ...` (what torchrun launches) runs `tamc train ...`."""
import sys

from ..cli import main
from ..cli import train_cmds  # noqa: F401  (registers nothing; keeps the import explicit)

main(["train", *sys.argv[1:]])
