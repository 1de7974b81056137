"""tamc with the search's mu replaced (notes 2026-12-07-low-rate-levers.md). Usage: python bench_mu.py MU bench ARGS..."""
import sys
import tamc_codec.runtime.search as search
search.MU_PER_INV_LAMBDA = float(sys.argv[1])
from tamc_codec.cli import main
main(sys.argv[2:])
