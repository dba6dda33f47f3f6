"""Training pipeline: data preparation, datasets, training and evaluation."""
