"""Training losses: partial optimal transport alignment, reconstruction."""
