"""Metrics: pure functions of probabilities and targets (no I/O)."""
