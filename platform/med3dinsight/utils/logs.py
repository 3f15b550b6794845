"""Readable logs for stage runs."""

from __future__ import annotations

import logging


def setup_logging(level: int = logging.INFO) -> None:
    """Timestamped `level name: message` lines on stderr for the med3dinsight loggers."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
