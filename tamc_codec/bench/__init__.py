"""tamc_codec.bench."""
