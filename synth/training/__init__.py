"""Training: sharding, state, steps, checkpointing and the loop."""
