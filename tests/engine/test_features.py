import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.exceptions import NotFittedError
from al_engine.features import TfidfFeaturizer

TEXTS = ["good movie", "bad movie", "good good plot"]


def test_transform_before_fit_raises():
    with pytest.raises(NotFittedError, match="not fitted"):
        TfidfFeaturizer().transform(TEXTS)


def test_hand_computed_tfidf_values():
    # vocabulary: bad, good, movie, plot; n=3 documents
    # idf = ln((1+n)/(1+df)) + 1: bad ln(4/2)+1, good ln(4/3)+1, movie ln(4/3)+1, plot ln(4/2)+1
    f = TfidfFeaturizer()
    x = f.fit_transform(TEXTS)
    assert sp.isspmatrix_csr(x) or isinstance(x, sp.csr_array)
    assert sorted(f.vectorizer_.vocabulary_) == ["bad", "good", "movie", "plot"]
    idf_rare, idf_common = np.log(2) + 1, np.log(4 / 3) + 1
    # doc 3: good tf=2 -> sublinear 1+ln 2; plot tf=1
    row = np.array([0.0, (1 + np.log(2)) * idf_common, 0.0, idf_rare])
    row /= np.linalg.norm(row)
    order = [f.vectorizer_.vocabulary_[t] for t in ["bad", "good", "movie", "plot"]]
    np.testing.assert_allclose(x[2].toarray()[0, order], row, rtol=1e-12)
    # doc 1: good, movie with the same idf -> 1/sqrt(2) each
    np.testing.assert_allclose(x[0].toarray()[0, order], [0, 2 ** -0.5, 2 ** -0.5, 0], rtol=1e-12)


def test_fit_then_transform_equals_fit_transform_and_unknown_words_ignored():
    a = TfidfFeaturizer().fit(TEXTS)
    b = TfidfFeaturizer()
    np.testing.assert_allclose(a.transform(TEXTS).toarray(), b.fit_transform(TEXTS).toarray())
    assert a.transform(["unseen words only"]).nnz == 0
    assert a.num_features == 4


def test_params_passed_through_and_bad_params_named():
    f = TfidfFeaturizer(ngram_range=(1, 2), lowercase=False).fit(["Good movie"])
    assert set(f.vectorizer_.vocabulary_) == {"Good", "movie", "Good movie"}
    with pytest.raises(ValueError, match="unknown TF-IDF parameter 'ngram'"):
        TfidfFeaturizer(ngram=(1, 2))
    with pytest.raises(ValueError, match="min_df"):
        TfidfFeaturizer(min_df=-3)


def test_single_string_rejected():
    with pytest.raises(ValueError, match="single string"):
        TfidfFeaturizer().fit("good movie")
