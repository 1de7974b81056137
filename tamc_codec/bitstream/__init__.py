"""tamc_codec.bitstream."""
