"""Reporting: every file medclf writes besides checkpoints (atomic writers, run log, tables, figures, HTML)."""
