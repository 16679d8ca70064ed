"""Engine: the epoch and inference loops, device and mixed precision, seeding, distributed training."""
