"""Converters from other frameworks' checkpoints (official PyTorch SPADE state dicts) to our variables."""
