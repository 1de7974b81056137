import os

# Tests must behave the same on 1 or 2 cores and never oversubscribe the CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
