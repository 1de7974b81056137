"""tamc_codec.tasks."""
