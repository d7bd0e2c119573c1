"""Server-side plots for the dashboard as inline SVG strings (no matplotlib, no JavaScript).

Building the SVG by hand costs well under a millisecond for 50 rounds and keeps the web
process free of matplotlib and torch; the dashboard caches the result per model version
(see :data:`backend.dashboard`).
"""
from __future__ import annotations

import math
from xml.sax.saxutils import escape

SERIES_COLORS = {"accuracy": "#1f77b4", "macro_f1": "#d62728"}


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


def learning_curve_svg(points: list[dict], fit: dict | None = None, target: int | None = None,
                       width: int = 640, height: int = 260) -> str:
    """Accuracy and macro-F1 against the number of labels, one marker per round.

    Parameters
    ----------
    points : list of dict
        ``{"round", "labeled", "accuracy", "macro_f1"}`` (values may be None: skipped).
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
    left, right, top, bottom = 48, 16, 14, 38
    pw, ph = width - left - right, height - top - bottom
    pts = [p for p in points if p.get("labeled") is not None
           and (p.get("accuracy") is not None or p.get("macro_f1") is not None)]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="learning-curve" role="img" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'font-family="sans-serif" font-size="11">',
           "<title>Learning curve: cross-validated accuracy and macro-F1 per round</title>"]
    if not pts:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">'
                   "no cross-validated rounds yet</text></svg>")
        return "".join(out)
    xs = [p["labeled"] for p in pts]
    x_hi = max(xs)
    if fit and target:
        x_hi = max(x_hi, min(int(target), 3 * max(xs)))
    x_lo = 0
    xt = _nice_ticks(x_lo, x_hi)
    x_hi = max(x_hi, xt[-1])
    ys = [p[k] for p in pts for k in ("accuracy", "macro_f1") if p.get(k) is not None]
    y_lo = max(0.0, math.floor(min(ys) * 10) / 10 - 0.1) if ys else 0.0
    yt = _nice_ticks(y_lo, 1.0, 5)
    y_lo = min(y_lo, yt[0])

    def sx(v: float) -> float:
        return round(left + (v - x_lo) / ((x_hi - x_lo) or 1) * pw, 1)

    def sy(v: float) -> float:
        return round(top + (1.0 - (v - y_lo) / ((1.0 - y_lo) or 1)) * ph, 1)

    for v in yt:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(v)}" y2="{sy(v)}" stroke="#e5e5e5"/>'
                   f'<text x="{left - 6}" y="{sy(v) + 4}" text-anchor="end">{_fmt(v)}</text>')
    for v in xt:
        out.append(f'<line x1="{sx(v)}" x2="{sx(v)}" y1="{top + ph}" y2="{top + ph + 4}" '
                   f'stroke="#333"/><text x="{sx(v)}" y="{top + ph + 16}" '
                   f'text-anchor="middle">{_fmt(v)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>'
               f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">labeled tasks'
               f'</text>')
    if fit and target and all(k in fit for k in ("a", "b", "c")):
        a, b, c = float(fit["a"]), float(fit["b"]), float(fit["c"])
        n0 = max(1.0, float(min(xs)))
        n1 = float(x_hi)
        curve = []
        for i in range(41):
            n = n0 + (n1 - n0) * i / 40
            curve.append(f"{sx(n)},{sy(min(1.0, max(y_lo, a - b * n ** (-c))))}")
        out.append(f'<polyline class="fit" points="{" ".join(curve)}" fill="none" '
                   f'stroke="#888" stroke-dasharray="4 3"><title>fitted accuracy '
                   f'{escape(f"{a:.3f} - {b:.3f} n^-{c:.3f}")}</title></polyline>')
        if target <= x_hi:
            out.append(f'<line x1="{sx(target)}" x2="{sx(target)}" y1="{top}" y2="{top + ph}" '
                       f'stroke="#888" stroke-dasharray="1 3"/><text x="{sx(target) - 4}" '
                       f'y="{top + 12}" text-anchor="end" fill="#555">labels needed '
                       f'{int(target)}</text>')
    for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        color = SERIES_COLORS[key]
        series = [(p["labeled"], p[key], p.get("round")) for p in pts if p.get(key) is not None]
        if not series:
            continue
        line = " ".join(f"{sx(x)},{sy(y)}" for x, y, _ in series)
        out.append(f'<polyline class="series {key}" points="{line}" fill="none" stroke="{color}" '
                   f'stroke-width="2"/>')
        for x, y, r in series:
            out.append(f'<circle cx="{sx(x)}" cy="{sy(y)}" r="3" fill="{color}"><title>round '
                       f'{escape(str(r))}: {label} {y:.3f} at {x} labels</title></circle>')
    lx = left + 10
    for i, (key, label) in enumerate((("accuracy", "accuracy (k-fold CV)"),
                                      ("macro_f1", "macro-F1 (k-fold CV)"))):
        y = top + ph - 30 + 14 * i
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{y}" y2="{y}" stroke="{SERIES_COLORS[key]}"'
                   f' stroke-width="2"/><text x="{lx + 24}" y="{y + 4}">{label}</text>')
    out.append("</svg>")
    return "".join(out)
