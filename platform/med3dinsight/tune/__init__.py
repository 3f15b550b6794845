"""Hyperparameter sweeps on Ray Tune over the training stages (see jobs/sweep.py)."""
