"""Speech networks, weights, training and evaluation."""
