"""Stand-ins for small-text's ``SklearnDataset`` and its view, with the attributes our
duck typing reads (``x``, ``y``, ``is_multi_label``, ``clone``), so the engine's tests need not
import small-text (the small-text suite itself runs in ``tests/compat``)."""
import numpy as np
import scipy.sparse as sp


class FakeSklearnDataset:
    def __init__(self, x, y):
        self.x, self.y = x, y

    @property
    def is_multi_label(self):
        return sp.issparse(self.y)

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, item):
        return FakeSklearnDatasetView(self, item)

    def clone(self):
        return FakeSklearnDataset(self.x.copy(), self.y.copy())


class FakeSklearnDatasetView:
    """Like small-text's view: y cannot be set."""

    def __init__(self, dataset, item):
        self._dataset, self._item = dataset, np.asarray(item)

    x = property(lambda self: self._dataset.x[self._item])
    y = property(lambda self: self._dataset.y[self._item])
    is_multi_label = property(lambda self: self._dataset.is_multi_label)

    def __len__(self):
        return self._item.size

    def clone(self):
        return FakeSklearnDataset(self.x.copy(), self.y.copy())
