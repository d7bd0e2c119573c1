"""Fixtures of the reliability tests (real Redis, real gunicorn, real RQ workers)."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from tests.reliability.harness import (MAIN_REDIS, FakeLS, cleanup_prefix, require_redis,
                                       unique_prefix)

RESULTS = Path(os.environ.get("STUDIO_AL_RESULTS", "")) if os.environ.get("STUDIO_AL_RESULTS") \
    else None


@pytest.fixture
def main_redis(request):
    """The machine's Redis (127.0.0.1:6379) under a key prefix unique to this test."""
    conn = require_redis()
    prefix = unique_prefix(request.node.name[:20].replace("[", "-").replace("]", ""))
    yield MAIN_REDIS, prefix
    cleanup_prefix(conn, prefix)


@pytest.fixture
def fake_ls():
    ls = FakeLS(token=secrets.token_hex(16))
    yield ls
    ls.stop()


@pytest.fixture
def report():
    """``report(name, **numbers)``: print the measured figures (and keep them in
    ``$STUDIO_AL_RESULTS/reliability.jsonl`` when that variable is set)."""
    def _report(name: str, **numbers):
        line = json.dumps({"test": name, **numbers})
        print(f"\nMEASURED {line}")
        if RESULTS is not None:
            RESULTS.mkdir(parents=True, exist_ok=True)
            with open(RESULTS / "reliability.jsonl", "a") as fh:
                fh.write(line + "\n")
    return _report
