"""tamc_codec.entropy."""
