"""Test-session defaults.

The tests were written against the classic pipeline (TF-IDF + ``linear_svc`` + breaking ties,
random cold start) and assert its exact rankings, so every test runs it unless it sets the
``AL_*`` variable itself: :data:`CLASSIC` replaces the product defaults of
``backend.settings.ENV_DEFAULTS`` in this process and is exported for the backends the tests
start as subprocesses. The product defaults (the measured default pipeline,
``benchmarks/results/label_efficiency.md``) are kept in :data:`PRODUCT_DEFAULTS` and tested in
``tests/backend/test_settings.py`` and ``tests/neural/test_default_pipeline.py``.
"""
from __future__ import annotations

import os

CLASSIC = {"AL_CLASSIFIER": "linear_svc", "AL_QUERY_STRATEGY": "breaking_ties",
           "AL_INIT_STRATEGY": "random"}
PRODUCT_DEFAULTS: dict = {}


def pytest_configure(config):
    from backend import settings
    PRODUCT_DEFAULTS.update(settings.ENV_DEFAULTS)
    settings.ENV_DEFAULTS.update(CLASSIC)
    for name, value in CLASSIC.items():
        os.environ.setdefault(name, value)
