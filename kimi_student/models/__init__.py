"""Models: the embedded teacher as an HF folder, student configs and construction."""
