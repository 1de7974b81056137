"""The causal DAG of group latents (paper §3.3, Alg. 1): which coded group is its parent's context.

``dag`` builds the DAG from the groups' latents by conditional entropy (Eq. 10), orders the
layers topologically, and reads and writes ``dag.json``; its estimators of H(Yc | Yp) are
``kde`` (the paper's Kolchinsky-Tracey KDE oracle, Eq. 9) and ``cond_coding`` (the bits a small
conditional entropy model spends); ``plots`` draws a ``dag.json``. Which tasks form the groups
is ``tamc_codec.grouping``.

Submodules are imported explicitly; this package's import stays light.
"""
