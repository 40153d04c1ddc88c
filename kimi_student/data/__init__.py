"""Datasets: the contextual tool-use dataset (generate, extract, verify)."""
