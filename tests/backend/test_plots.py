"""backend.plots.learning_curve_svg: the fitted power law and the labels-needed marker."""
import re

from backend import plots

POINTS = [{"round": 1, "labeled": 10, "accuracy": 0.6, "macro_f1": 0.5},
          {"round": 2, "labeled": 20, "accuracy": 0.7, "macro_f1": None}]
FIT = {"a": 0.9, "b": 1.0, "c": 0.5}


def test_fit_is_drawn_to_the_target_with_its_marker():
    svg = plots.learning_curve_svg(POINTS, fit=FIT, target=50, width=400, height=200)
    fit_points = re.search(r'<polyline class="fit" points="([^"]+)"', svg).group(1).split()
    assert len(fit_points) == 41
    # x runs 0..50 (the target), plot width 336 from 48: from 10 labels (115.2) to the end
    assert fit_points[0].startswith("115.2,") and fit_points[-1].startswith("384.0,")
    assert "labels needed 50</text>" in svg and "fitted accuracy 0.900 - 1.000 n^-0.500" in svg
    assert svg.count("<circle") == 3 and svg.endswith("</svg>")


def test_target_beyond_three_times_the_labels_has_no_marker():
    svg = plots.learning_curve_svg(POINTS, fit=FIT, target=1000)
    assert 'class="fit"' in svg and "labels needed" not in svg


def test_incomplete_fit_is_not_drawn():
    assert 'class="fit"' not in plots.learning_curve_svg(POINTS, fit={"a": 1.0}, target=30)
