"""ml-collections configs: one file per model x dataset, each with get_config(arg)."""
