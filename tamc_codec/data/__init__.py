"""tamc_codec.data."""
