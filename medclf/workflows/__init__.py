"""Workflows: one module per command (train, validate, predict, explain) plus the shared inference set-up."""
