"""Runners turn dataset items into transcripts: gold text, predictions, or a model through the tool loop."""
