"""Training tooling: data sets of stereo pairs and the training loop."""
