"""tamc_codec.train."""

#: Stage1Config.views / Stage2Config.views: what training batches show (torch-free, for the CLI).
VIEWS = ("crop", "mix", "rooms")

#: Stage1Config.precision: float32, or bfloat16 autocast for forward and backward (torch-free, for the CLI).
PRECISIONS = ("fp32", "bf16")

#: Stage2Config.lambdas: λ per quality, lowest rate first (docs/TRAINING.md, "λ").
DEFAULT_LAMBDAS = (0.01, 0.1, 0.6, 2.5, 32.0)

#: Stage2Config.gain_range: starting quantisation step of quality 1 and Q, as std / value.
DEFAULT_GAIN_RANGE = (0.2, 12.0)

#: export's scene size: side of the generated training scenes (bin/train-default renders them at 256²).
DEFAULT_SCENE_SIZE = 256
