"""Contract-suite support: the engine's small pool with texts and a fitted tiny KimCNN, for
strategies that need a torch classifier (``requires_torch_classifier = True``)."""
from __future__ import annotations

import numpy as np
import pytest

from al_engine.data import Dataset

_FITTED: dict = {}


def _contract_kimcnn_cls():
    from al_engine.classifiers.kimcnn import KimCNNClassifier

    class ContractKimCNN(KimCNNClassifier):
        @property
        def weights(self) -> np.ndarray:
            """All parameters, flattened (the contract suite checks they are not mutated)."""
            return np.concatenate([p.detach().cpu().numpy().ravel()
                                   for p in self.model_.parameters()])

    return ContractKimCNN


def with_torch_classifier(pool):
    """``pool`` with texts added to its dataset and a tiny KimCNN fitted on its labeled rows
    (cached per pool shape and label mode: the suite builds the same pools many times)."""
    pytest.importorskip("torch", reason="strategies needing a torch classifier need torch")
    from tests.engine.conftest import Pool
    from tests.neural.conftest import make_texts
    ds = pool.dataset
    n = len(ds)
    texts, _ = make_texts(n, seed=n)
    with_texts = Dataset(x=ds.x, y=ds.y, texts=texts, multi_label=ds.multi_label,
                         labeled=ds.labeled_mask if ds.multi_label else None)
    key = (n, ds.multi_label, tuple(pool.indices_labeled.tolist()), float(ds.x[0, 0]))
    if key not in _FITTED:
        clf = _contract_kimcnn_cls()(pool.clf.num_classes, multi_label=ds.multi_label, embed_dim=8,
                                     num_kernels=4, kernel_heights=(2, 3), num_epochs=2,
                                     mini_batch_size=16)
        clf.featurize(with_texts)
        clf.fit(with_texts[pool.indices_labeled])
        _FITTED[key] = clf
    return Pool(with_texts, pool.indices_labeled, _FITTED[key])
