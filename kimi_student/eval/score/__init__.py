"""Scoring: pure functions from a transcript and its item to counts (DESIGN section 5)."""
