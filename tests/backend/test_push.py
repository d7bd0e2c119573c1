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


def test_writes_wait_until_the_annotator_had_their_next_task(monkeypatch):
    """Each burst of writes starts QUIET_AFTER_ANNOTATION_S after the newest annotation
    webhook (bounded by QUIET_MAX_WAIT_S); without recent annotations it does not wait."""
    from backend import push
    from backend.labelconfig import parse_label_config
    from tests.backend.conftest import SINGLE_CONFIG, FakeLabelStudio
    monkeypatch.setattr(push, "QUIET_AFTER_ANNOTATION_S", 0.8)
    slept = []
    monkeypatch.setattr(push.time, "sleep", slept.append)
    now = 1000.0
    monkeypatch.setattr(push.time, "time", lambda: now)
    cfg = parse_label_config(SINGLE_CONFIG)
    ls = FakeLabelStudio()
    annotated = [999.7]
    p = push.Pusher(ls, 1, cfg, "v", last_annotation_at=lambda: annotated[0])
    p.switch()
    assert slept == [pytest.approx(0.5)]            # 999.7 + 0.8 - 1000
    annotated[0] = 1000.0 + 10                      # clock skew: never more than the cap
    p.switch()
    assert slept[-1] == pytest.approx(push.QUIET_MAX_WAIT_S)
    annotated[0] = 990.0                            # long ago: no wait
    p.switch()
    assert len(slept) == 2 and p.waited == pytest.approx(0.5 + push.QUIET_MAX_WAIT_S)
