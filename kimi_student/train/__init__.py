"""Training: KD losses, process-step weights, the trainer."""
