"""Training: the run loop (base_trainer), the GAN and IMLE trainers and steps, optimisers, sharding, preemption."""
