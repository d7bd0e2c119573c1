"""Server-side plots for the dashboard as inline SVG strings (no matplotlib, no JavaScript).

Building the SVG by hand costs well under a millisecond for 50 rounds and keeps the web
process free of matplotlib and torch; the dashboard caches the result per model version
(see :data:`backend.dashboard`).
"""
from __future__ import annotations

import math
from xml.sax.saxutils import escape

SERIES_COLORS = {"estimate": "#2ca02c", "accuracy": "#1f77b4", "macro_f1": "#d62728"}
#: (key, legend text, dashed): the probe estimate is the figure to trust; the CV figures are
#: computed on actively chosen labels and biased (either way)
SERIES = (("estimate", "accuracy on random tasks (95% band)", False),
          ("accuracy", "accuracy, CV on active labels (biased)", True),
          ("macro_f1", "macro-F1, CV on active labels (biased)", True))
SCORE_KEYS = ("estimate", "estimate_low", "estimate_high", "accuracy", "macro_f1")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 x 10^k)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + 1e-9 * step:
        if v >= lo - 1e-9 * step:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    return f"{int(v)}" if float(v).is_integer() else f"{v:g}"


#: Plot margins in pixels: left (y tick labels), right, top, bottom (x ticks and axis label).
MARGINS = (48, 16, 14, 38)


class _Frame:
    """The plot area of a ``width`` x ``height`` SVG and its data-to-pixel scales.

    ``x`` runs from 0 to the largest label count (or the labels-needed target, at most 3x the
    labels so far, when a fit is drawn) rounded up to a tick; ``y`` from a tenth below the
    lowest score (not below 0) to 1.
    """

    def __init__(self, pts: list[dict], fit: dict | None, target: int | None, width: int,
                 height: int) -> None:
        self.width, self.height = width, height
        self.left, right, self.top, bottom = MARGINS
        self.pw, self.ph = width - self.left - right, height - self.top - bottom
        xs = [p["labeled"] for p in pts]
        x_hi = max(xs)
        if fit and target:
            x_hi = max(x_hi, min(int(target), 3 * max(xs)))
        self.x_lo = 0
        self.xt = _nice_ticks(self.x_lo, x_hi)
        self.x_hi = max(x_hi, self.xt[-1])
        ys = [p[k] for p in pts for k in SCORE_KEYS if p.get(k) is not None]
        y_lo = max(0.0, math.floor(min(ys) * 10) / 10 - 0.1) if ys else 0.0
        self.yt = _nice_ticks(y_lo, 1.0, 5)
        self.y_lo = min(y_lo, self.yt[0])

    def sx(self, v: float) -> float:
        return round(self.left + (v - self.x_lo) / ((self.x_hi - self.x_lo) or 1) * self.pw, 1)

    def sy(self, v: float) -> float:
        return round(self.top + (1.0 - (v - self.y_lo) / ((1.0 - self.y_lo) or 1)) * self.ph, 1)


def _svg_open(width: int, height: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" id="learning-curve" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="sans-serif" font-size="11">',
            "<title>Learning curve: accuracy on random tasks (with its 95% interval) and "
            "cross-validated accuracy and macro-F1 per round</title>"]


def _axes(f: _Frame) -> list[str]:
    """Horizontal grid lines with the y ticks, the x ticks, the frame and the x-axis label."""
    out = [f'<line x1="{f.left}" x2="{f.left + f.pw}" y1="{f.sy(v)}" y2="{f.sy(v)}" '
           f'stroke="#e5e5e5"/><text x="{f.left - 6}" y="{f.sy(v) + 4}" text-anchor="end">'
           f'{_fmt(v)}</text>' for v in f.yt]
    out += [f'<line x1="{f.sx(v)}" x2="{f.sx(v)}" y1="{f.top + f.ph}" y2="{f.top + f.ph + 4}" '
            f'stroke="#333"/><text x="{f.sx(v)}" y="{f.top + f.ph + 16}" '
            f'text-anchor="middle">{_fmt(v)}</text>' for v in f.xt]
    out.append(f'<rect x="{f.left}" y="{f.top}" width="{f.pw}" height="{f.ph}" fill="none" '
               f'stroke="#333"/><text x="{f.left + f.pw / 2}" y="{f.height - 4}" '
               f'text-anchor="middle">labeled tasks</text>')
    return out


def _fit(f: _Frame, fit: dict, target: int, first_labeled: float) -> list[str]:
    """The dashed power law from the first point to the frame's end, and the target marker."""
    a, b, c = float(fit["a"]), float(fit["b"]), float(fit["c"])
    n0, n1 = max(1.0, float(first_labeled)), float(f.x_hi)
    curve = []
    for i in range(41):
        n = n0 + (n1 - n0) * i / 40
        curve.append(f"{f.sx(n)},{f.sy(min(1.0, max(f.y_lo, a - b * n ** (-c))))}")
    out = [f'<polyline class="fit" points="{" ".join(curve)}" fill="none" '
           f'stroke="#888" stroke-dasharray="4 3"><title>fitted accuracy '
           f'{escape(f"{a:.3f} - {b:.3f} n^-{c:.3f}")}</title></polyline>']
    if target <= f.x_hi:
        out.append(f'<line x1="{f.sx(target)}" x2="{f.sx(target)}" y1="{f.top}" '
                   f'y2="{f.top + f.ph}" stroke="#888" stroke-dasharray="1 3"/><text '
                   f'x="{f.sx(target) - 4}" y="{f.top + 12}" text-anchor="end" fill="#555">'
                   f'labels needed {int(target)}</text>')
    return out


def _band(f: _Frame, pts: list[dict]) -> list[str]:
    """The estimate's interval as a shaded polygon, and the majority-label baseline."""
    band = [(p["labeled"], p["estimate_low"], p["estimate_high"]) for p in pts
            if p.get("estimate_low") is not None and p.get("estimate_high") is not None]
    out = []
    if band:
        edge = [f"{f.sx(x)},{f.sy(lo)}" for x, lo, _ in band]
        edge += [f"{f.sx(x)},{f.sy(hi)}" for x, _, hi in reversed(band)]
        out.append(f'<polygon class="band" points="{" ".join(edge)}" '
                   f'fill="{SERIES_COLORS["estimate"]}" fill-opacity="0.15" stroke="none"/>')
    majority = [p["majority"] for p in pts if p.get("majority") is not None]
    if majority and f.y_lo <= majority[-1] <= 1.0:
        y = f.sy(majority[-1])
        out.append(f'<line class="majority" x1="{f.left}" x2="{f.left + f.pw}" y1="{y}" '
                   f'y2="{y}" stroke="#555" stroke-dasharray="2 2"><title>always answering the '
                   f'majority label: {majority[-1]:.3f}</title></line>')
    return out


def _series(f: _Frame, pts: list[dict]) -> list[str]:
    """One line per score with a marker (and a tooltip) per round."""
    out = []
    for key, label, dashed in SERIES:
        color = SERIES_COLORS[key]
        series = [(p["labeled"], p[key], p.get("round")) for p in pts if p.get(key) is not None]
        if not series:
            continue
        line = " ".join(f"{f.sx(x)},{f.sy(y)}" for x, y, _ in series)
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(f'<polyline class="series {key}" points="{line}" fill="none" '
                   f'stroke="{color}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{f.sx(x)}" cy="{f.sy(y)}" r="3" fill="{color}"><title>round '
                f'{escape(str(r))}: {escape(label)} {y:.3f} at {x} labels</title></circle>'
                for x, y, r in series]
    return out


def _legend(f: _Frame, pts: list[dict]) -> list[str]:
    lx = f.left + 10
    shown = [(k, label, dashed) for k, label, dashed in SERIES
             if any(p.get(k) is not None for p in pts)]
    out = []
    for i, (key, label, dashed) in enumerate(shown):
        y = f.top + f.ph - 14 * len(shown) - 2 + 14 * i
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{y}" y2="{y}" '
                   f'stroke="{SERIES_COLORS[key]}" stroke-width="2"{dash}/><text x="{lx + 24}" '
                   f'y="{y + 4}">{label}</text>')
    return out


def learning_curve_svg(points: list[dict], fit: dict | None = None, target: int | None = None,
                       width: int = 640, height: int = 260) -> str:
    """Accuracy against the number of labels, one marker per round: the estimate on random
    probes with its interval (a band) and the majority-label baseline, and the (biased)
    cross-validated accuracy and macro-F1.

    Parameters
    ----------
    points : list of dict
        ``{"round", "labeled", "estimate", "estimate_low", "estimate_high", "majority",
        "accuracy", "macro_f1"}`` (values may be None or missing: skipped).
    fit : dict or None
        ``{"a", "b", "c"}`` of the labels-needed power law :math:`f(n) = a - b n^{-c}`; drawn
        dashed from the first point to ``target`` (the estimate), at most 3x the labels so far.
    target : int or None
        Labels needed (a vertical dotted marker).

    Returns
    -------
    str
        An ``<svg>`` element (``role="img"``, ``id="learning-curve"``).
    """
    pts = [p for p in points if p.get("labeled") is not None
           and any(p.get(k) is not None for k in SCORE_KEYS)]
    out = _svg_open(width, height)
    if not pts:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">'
                   "no evaluated rounds yet</text></svg>")
        return "".join(out)
    frame = _Frame(pts, fit, target, width, height)
    out += _axes(frame)
    if fit and target and all(k in fit for k in ("a", "b", "c")):
        out += _fit(frame, fit, target, min(p["labeled"] for p in pts))
    out += _band(frame, pts) + _series(frame, pts) + _legend(frame, pts)
    out.append("</svg>")
    return "".join(out)
