"""Runnable examples (make example)."""
