"""backend.ranking: a version's full ranking, looked up by /predict."""
import numpy as np
import pytest

from backend.ranking import Ranking


def test_build_lookup_head_and_round_trip():
    r = Ranking.build([30, 10, 20], [0.0, 0.5, 1.0], [["b"], ["a"], []], [0.9, 0.6, np.nan],
                      ["a", "b"], multi_label=False)
    assert [e.task for e in r.head(2)] == [30, 10] and len(r) == 3
    back = Ranking.from_bytes(r.to_bytes())
    got = back.lookup([20, 99, 30, 10])
    assert got[1] is None
    assert (got[0].score, got[0].labels, got[0].confidence) == (1.0, [], None)
    assert (got[2].score, got[2].labels, got[2].confidence) == (0.0, ["b"], pytest.approx(0.9))
    assert got[3].as_dict() == {"task": 10, "score": 0.5, "labels": ["a"], "confidence": 0.6}
    assert [e.task for e in back.entries(1, 10)] == [10, 20]


def test_multi_label_and_no_model():
    r = Ranking.build([5, 6], [0.0, 1.0], [["x", "z"], []], [0.7, 0.8], ["x", "y", "z"], True)
    e = Ranking.from_bytes(r.to_bytes()).lookup([5, 6])
    assert e[0].labels == ["x", "z"] and e[1].labels == []
    cold = Ranking.from_bytes(Ranking.build([1], [0.0], None, None, ["a"], False).to_bytes())
    assert cold.lookup([1])[0].labels == [] and cold.lookup([1])[0].confidence is None
    empty = Ranking.build([], [], None, None, ["a"], False)
    assert empty.lookup([1]) == [None] and empty.head(5) == []


@pytest.mark.parametrize("cut", [0, 10, 100, -10])
def test_damaged_file_is_a_value_error(cut):
    data = Ranking.build([1, 2], [0.0, 1.0], [["a"], ["a"]], [0.5, 0.5], ["a"], False).to_bytes()
    with pytest.raises(ValueError, match="damaged ranking"):
        Ranking.from_bytes(data[:cut] if cut >= 0 else data[:cut] + b"junk")


def test_lookup_in_a_100k_ranking():
    n = 100_000
    ids = np.random.default_rng(0).permutation(n) + 1
    r = Ranking.from_bytes(Ranking.build(ids, np.arange(n) / (n - 1), [["a"]] * n,
                                         np.full(n, 0.5), ["a"], False).to_bytes())
    rank_of = {int(t): i for i, t in enumerate(ids[:5])}
    got = r.lookup(list(rank_of) + [n + 1])
    assert [g.score for g in got[:5]] == pytest.approx([i / (n - 1) for i in rank_of.values()])
    assert got[5] is None
