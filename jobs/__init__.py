"""Thin stage entry points: `python -m jobs.<stage> --config ... key=value ...`."""
