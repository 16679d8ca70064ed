"""Engine: epoch and inference loops, penultimate-layer features, device and AMP, seeding, distributed training."""
