"""Making a model's AVIF picture layer (docs/MODEL.md, "Picture layers"): measuring AVIF at each scale on
validation pictures, choosing each quality's setting, and writing the model (`build`). Torch-free; it
uses the benchmark's codec settings (bench.baselines), and nothing in bench or train imports it."""
