"""tamc_codec.train."""

#: Stage1Config.views / Stage2Config.views: what training batches show (torch-free, for the CLI).
VIEWS = ("crop", "mix")
