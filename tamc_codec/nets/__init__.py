"""tamc_codec.nets."""
