"""Task grouping (paper §3.2, Alg. 2): which tasks share an encoder and a coded latent.

``affinity`` trains a small shared network and measures the lookahead gradient-coherence
affinity Ĉ between tasks (Eqs. 6-8) and runs ``tamc group --method lookahead``; ``selection``
turns Ĉ into group scores and chooses the groups within the budget by branch and bound;
``dmtg`` is the alternative one-shot differentiable grouping (``--method dmtg``);
``grouping_io`` builds, validates, saves and loads ``grouping.json``; ``affinity_plot`` draws
Ĉ as a heat map. The causal DAG between the chosen groups' latents is ``tamc_codec.dag``.

Submodules are imported explicitly; this package's import stays light.
"""
