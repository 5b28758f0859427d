"""Loading a model from any source and what it is: its description (torch-free), checkpoints, classes, layers."""
