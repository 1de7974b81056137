"""tamc_codec.nets."""

#: NetConfig.norm (torch-free, for the CLI and the probes). "group" normalises over a whole
#: picture's extent, so its statistics change with the picture's size; "channel" normalises
#: each pixel's features alone and computes the same at any size (docs/TRAINING.md).
NORMS = ("none", "group", "channel")
