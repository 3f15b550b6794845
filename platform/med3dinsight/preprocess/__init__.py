"""Preprocessing applied to every volume before it is stored: geometry and intensity policy."""
