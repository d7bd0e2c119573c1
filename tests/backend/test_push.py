"""backend.push: the head size K and the annotation rate it comes from (hand-computed)."""
import pytest

from backend.push import annotation_rate, head_size
from backend.settings import Settings


def _s(**env):
    return Settings.from_env(env, validate_components=False)


def test_annotation_rate_counts_recent_annotations_and_annotators():
    now = 1000.0
    recent = [[940.0, 1], [970.0, 2], [985.0, 1], [999.0, None], [500.0, 3]]  # one too old
    rate, annotators = annotation_rate(recent, now, window=300)
    assert rate == pytest.approx(4 / 60) and annotators == 2  # span 60 s since 940
    assert annotation_rate([[990.0, 1]], now) == (0.0, 1)        # one annotation: no rate
    rate, _ = annotation_rate([[995.0, 1], [999.0, 1]], now)
    assert rate == pytest.approx(2 / 30)                          # the span is at least 30 s


@pytest.mark.parametrize("rate,annotators,round_s,expected", [
    (0.0, 0, 3.0, 6),     # nobody annotating: the floor AL_PUSH_HEAD
    (1.0, 2, 3.0, 15),    # ceil(1.5 * 1.0 * (3 + 5)) + 2 + 1 = 12 + 3
    (0.5, 2, 7.0, 12),    # ceil(1.5 * 0.5 * 12) + 3 = 9 + 3
    (40.0, 4, 10.0, 200),  # a burst: capped at AL_PUSH_MAX
])
def test_head_size(rate, annotators, round_s, expected):
    assert head_size(_s(), rate, annotators, round_s) == expected
    assert head_size(_s(AL_PUSH_HEAD="30"), rate, annotators, round_s) == max(expected, 30)

