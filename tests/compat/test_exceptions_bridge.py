"""Our exceptions are real subclasses of small-text's (al_engine.compat.bridge), whichever of
al_engine and small-text is imported first, without al_engine importing small-text."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from al_engine.compat.bridge import add_bases_when_imported

# small_text imported with torch and transformers hidden (it then skips those integrations):
# ~3 s instead of ~10 s, and the exception classes are the same.
_HIDE_TORCH = textwrap.dedent("""
    import sys
    class _Hide:
        def find_spec(self, name, path, target=None):
            if name.partition('.')[0] in ('torch', 'transformers'):
                raise ModuleNotFoundError(name)
    sys.meta_path.insert(0, _Hide())
""")
_IMPORT_SMALL_TEXT = "import small_text.exceptions as ste, small_text.query_strategies as stq\n"
_IMPORT_OURS = "import al_engine.exceptions as ae\n"
_CHECK = textwrap.dedent("""
    pairs = [(ae.EmptyPoolError, stq.EmptyPoolException, ValueError),
             (ae.PoolExhaustedError, stq.PoolExhaustedException, ValueError),
             (ae.LearnerNotInitializedError, ste.LearnerNotInitializedException, RuntimeError),
             (ae.MultiLabelNotSupportedError, ste.ConstraintViolationError, ValueError)]
    for ours, theirs, builtin in pairs:
        for catch in (theirs, builtin):
            try:
                raise ours('boom')
            except catch as exc:
                assert str(exc) == 'boom'
    try:
        raise ae.IncompatibleComponentsError('x')
    except ValueError:
        pass
    assert not [f for f in sys.meta_path if type(f).__name__ == '_AfterImportFinder']
    print('ok')
""")

needs_small_text = pytest.mark.skipif(importlib.util.find_spec("small_text") is None,
                                      reason="small-text is not installed")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@needs_small_text
@pytest.mark.parametrize("first, second", [(_IMPORT_SMALL_TEXT, _IMPORT_OURS),
                                           (_IMPORT_OURS, _IMPORT_SMALL_TEXT)],
                         ids=["small_text_first", "al_engine_first"])
def test_small_text_except_clauses_catch_ours(first, second):
    assert _run(_HIDE_TORCH + first + second + _CHECK).strip() == "ok"


def test_importing_our_exceptions_imports_neither_small_text_nor_torch():
    loaded = _run("import sys, al_engine.exceptions\nprint(' '.join(sys.modules))").split()
    assert "small_text" not in loaded and "torch" not in loaded


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package ``fakest`` whose module ``fakest.errors`` defines ``Theirs(Exception)``."""
    (tmp_path / "fakest").mkdir()
    (tmp_path / "fakest" / "__init__.py").write_text("")
    (tmp_path / "fakest" / "errors.py").write_text("class Theirs(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("fakest.errors", "fakest"):
        sys.modules.pop(name, None)


def test_base_added_when_the_module_is_imported_later(fake_package):
    class Ours(ValueError):
        pass

    add_bases_when_imported({Ours: "fakest.errors.Theirs"})
    assert Ours.__bases__ == (ValueError,)
    from fakest.errors import Theirs
    assert Ours.__bases__ == (ValueError, Theirs)
    finders = [f for f in sys.meta_path if type(f).__name__ == "_AfterImportFinder"]
    assert all("fakest.errors" not in f.pending for f in finders)  # small_text's may remain


def test_base_added_at_once_when_the_module_is_imported(fake_package):
    from fakest.errors import Theirs

    class Ours(RuntimeError):
        pass

    add_bases_when_imported({Ours: "fakest.errors.Theirs"})
    assert issubclass(Ours, Theirs) and issubclass(Ours, RuntimeError)


def test_nothing_happens_for_a_package_that_is_not_installed():
    class Ours(ValueError):
        pass

    before = list(sys.meta_path)
    add_bases_when_imported({Ours: "no_such_package_xyz.errors.Theirs"})
    assert Ours.__bases__ == (ValueError,) and sys.meta_path == before
