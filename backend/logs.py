"""Logging set-up shared by the web process, the training child process and RQ workers.

Every backend logger is a child of :data:`ROOT` (``studio_al.<component>``, see
:func:`get_logger`); the engine's are children of ``al_engine`` (a library names its loggers
after its package). :func:`configure_logging` gives both trees ``LOG_LEVEL`` and the
``key=value`` line format; a logger outside them would keep Python's defaults.
"""
from __future__ import annotations

import logging
import sys

#: The root of the backend's logger tree.
ROOT = "studio_al"
#: Every tree :func:`configure_logging` configures: the backend's and the engine's.
TREES = (ROOT, "al_engine")


def get_logger(component: str) -> logging.Logger:
    """The logger ``studio_al.<component>`` (configured by :func:`configure_logging`)."""
    return logging.getLogger(f"{ROOT}.{component}")


def configure_logging(level: str) -> None:
    """Structured key=value lines on stderr, at ``level``, for the loggers of :data:`TREES`."""
    for tree in TREES:
        logger = logging.getLogger(tree)
        logger.setLevel(level)
        if not any(getattr(h, "_studio_al", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(
                "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
            handler._studio_al = True
            logger.addHandler(handler)
            logger.propagate = False
