"""`import al_engine` must stay cheap and torch-free (the web process imports it)."""
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "sentence_transformers", "hnswlib", "sklearn")


def _modules_after(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_al_engine_loads_nothing_heavy():
    loaded = _modules_after("import al_engine")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_listing_the_registry_loads_nothing_heavy():
    loaded = _modules_after("from al_engine import registry\n"
                            "[registry.available(k) for k in "
                            "('query_strategy','stopping_criterion','classifier','initialization')]")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


@pytest.mark.parametrize("module", ["al_engine.data", "al_engine.learner", "al_engine.registry",
                                    "al_engine.query.uncertainty", "al_engine.stopping",
                                    "al_engine.init", "al_engine.classifiers.sklearn"])
def test_core_modules_never_import_torch(module):
    loaded = _modules_after(f"import {module}")
    assert "torch" not in loaded
