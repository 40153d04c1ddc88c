"""The Drafter: its training data (the Worker's own answers and hidden states) and its training."""
