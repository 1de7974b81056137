"""The lookahead: task grouping (paper §3.2, Alg. 2) and the causal DAG of group latents (§3.3, Alg. 1).

Submodules are imported explicitly; this package's import stays light.
"""
