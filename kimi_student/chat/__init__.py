"""The chat protocol shared by data, training and evaluation: the transcript format, the prompt
wrappers and a model's chat template."""
