"""Make al_engine classes real subclasses of small-text classes, without importing small-text.

``except small_text.query_strategies.EmptyPoolException`` must catch our
:class:`~al_engine.exceptions.EmptyPoolError`. An ``except`` clause tests the exception's real
class hierarchy (``__subclasscheck__`` and ``abc.register`` do not apply), so our class must have
small-text's among its bases. Importing small-text to subclass it statically would pull in torch
(~7 s) into every process that imports the engine, the backend's web process included.

:func:`add_bases_when_imported` therefore adds small-text's class to the bases of ours
(``Ours.__bases__ += (Theirs,)``) at the moment small-text defines it:

- if the defining module is already imported, at once;
- otherwise, if small-text is installed (``importlib.util.find_spec``, which imports nothing), a
  :class:`_AfterImportFinder` on ``sys.meta_path`` wraps the loader of that module, so that
  right after the module's code has run our class gets the new base; the finder removes itself
  once every pending module has been patched;
- if small-text is not installed, nothing happens.

Our classes keep their own bases first (``(ValueError, EmptyPoolException)``), so they stay what
they were (a ``ValueError`` is still caught as one) and the method resolution order is valid.
"""
from __future__ import annotations

import importlib.util
import sys
from importlib.abc import Loader, MetaPathFinder
from typing import Callable

_finder: "_AfterImportFinder | None" = None


def add_bases_when_imported(pairs: dict[type, str]) -> None:
    """Add, for each ``ours -> "module.Name"`` of ``pairs``, the class ``module.Name`` to the
    bases of ``ours``: now if ``module`` is imported, else right after it is (see the module
    docstring). Does nothing for a module whose top-level package is not installed.

    Raises
    ------
    TypeError
        If a class cannot take the new base (layout or MRO conflict).
    """
    global _finder
    pending: dict[str, list[tuple[type, str]]] = {}
    for ours, dotted in pairs.items():
        module, _, name = dotted.rpartition(".")
        if module in sys.modules:
            _add_base(ours, getattr(sys.modules[module], name))
        elif _installed(module.partition(".")[0]):
            pending.setdefault(module, []).append((ours, name))
    if not pending:
        return
    if _finder is None or _finder not in sys.meta_path:
        _finder = _AfterImportFinder()
        sys.meta_path.insert(0, _finder)
    for module, items in pending.items():
        _finder.pending.setdefault(module, []).extend(items)


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _add_base(ours: type, theirs: type) -> None:
    if not issubclass(ours, theirs):
        ours.__bases__ = (*ours.__bases__, theirs)


class _AfterImportFinder(MetaPathFinder):
    """Finds nothing itself: for a pending module, takes the spec the other finders give and
    wraps its loader so that the pending classes get their new bases after the module ran."""

    def __init__(self):
        self.pending: dict[str, list[tuple[type, str]]] = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenLoader(spec.loader, lambda module: self._patch(fullname, module))
        return spec

    def _patch(self, fullname: str, module) -> None:
        for ours, name in self.pending.pop(fullname, []):
            _add_base(ours, getattr(module, name))
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)


class _ThenLoader(Loader):
    """``loader``, then ``then(module)`` once the module's code has run."""

    def __init__(self, loader: Loader, then: Callable):
        self._loader = loader
        self._then = then

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._then(module)

    def __getattr__(self, name):  # get_source, get_filename, ... of the wrapped loader
        return getattr(self._loader, name)
