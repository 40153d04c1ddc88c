"""Evaluation: runners produce transcripts, scoring grounds them, gates judge the run, reports record it."""
