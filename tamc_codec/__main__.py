"""`python -m tamc_codec ...` runs `tamc ...`; it is also what torchrun launches for several
processes: `torchrun --nproc_per_node 2 -m tamc_codec train stage1 ...`."""
from .cli import main

main()
