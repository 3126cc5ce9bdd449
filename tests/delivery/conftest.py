"""Fixtures of the delivery tests (defined in delivery_support)."""

from delivery_support import pool, runtime, smtp

__all__ = ["pool", "runtime", "smtp"]
