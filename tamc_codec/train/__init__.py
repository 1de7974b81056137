"""tamc_codec.train."""
