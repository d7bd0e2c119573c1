"""Logging set-up shared by the web process, the training child process and RQ workers."""
from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Structured key=value lines on stderr for the ``studio_al`` loggers."""
    logger = logging.getLogger("studio_al")
    logger.setLevel(level)
    if not any(getattr(h, "_studio_al", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
        handler._studio_al = True
        logger.addHandler(handler)
        logger.propagate = False
