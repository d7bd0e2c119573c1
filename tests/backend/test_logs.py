"""Both logger trees, the backend's (studio_al.*) and the engine's (al_engine.*), get LOG_LEVEL
and the key=value line format from configure_logging."""
from __future__ import annotations

import io
import logging

import pytest

from backend.logs import TREES, configure_logging


@pytest.fixture
def captured():
    saved = {t: logging.getLogger(t).level for t in TREES}
    configure_logging("WARNING")
    buffers, streams = {}, {}
    for tree in TREES:
        handler = next(h for h in logging.getLogger(tree).handlers if getattr(h, "_studio_al", False))
        buffers[tree] = io.StringIO()
        streams[tree] = (handler, handler.setStream(buffers[tree]))
    yield buffers
    for tree, (handler, stream) in streams.items():
        handler.setStream(stream)
        logging.getLogger(tree).setLevel(saved[tree])


def test_engine_loggers_get_the_level_and_the_format(captured):
    log = logging.getLogger("al_engine.simulate")
    log.info("hidden at WARNING")
    log.warning("pool exhausted after %d rounds", 3)
    line = captured["al_engine"].getvalue()
    assert line.count("\n") == 1 and line.startswith("ts=")
    assert line.rstrip().endswith("level=WARNING logger=al_engine.simulate pool exhausted after 3 rounds")
    assert captured["studio_al"].getvalue() == ""


def test_configure_logging_twice_adds_no_second_handler(captured):
    configure_logging("ERROR")
    for tree in TREES:
        logger = logging.getLogger(tree)
        assert sum(getattr(h, "_studio_al", False) for h in logger.handlers) == 1
        assert logger.level == logging.ERROR and not logger.propagate
