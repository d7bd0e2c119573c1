"""Learning-curve plots (matplotlib, imported lazily with the Agg backend; ``pip install
studio-al[plots]``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def plot_learning_curves(summary: Sequence[dict], path: str | Path, title: str = "",
                         metrics: Sequence[str] = ("accuracy", "macro_f1")) -> Path:
    """One PNG: per metric a panel with each strategy's mean curve and a ± std band.

    Parameters
    ----------
    summary : sequence of dict
        Rows of :func:`al_engine.simulate.summarize` (``strategy``, ``labeled``,
        ``<metric>_mean``, ``<metric>_std``), usually of one classifier.
    path : str or Path
        The PNG to write (parent directories are created).
    title : str
    metrics : sequence of str

    Returns
    -------
    Path
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    if not summary:
        raise ValueError("summary: nothing to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0), squeeze=False)
    try:
        for ax, metric in zip(axes[0], metrics):
            for i, row in enumerate(summary):
                x = np.asarray(row["labeled"])
                mean = np.asarray(row[f"{metric}_mean"])
                std = np.asarray(row[f"{metric}_std"])
                color = f"C{i % 10}"
                # distinct dashes and markers keep identical curves (e.g. the uncertainty
                # strategies on binary data) visible on top of each other
                ax.plot(x, mean, marker="os^vDx"[i % 6], markersize=3.5, lw=1.5, color=color,
                        linestyle=("-", "--", ":", "-.")[i % 4], alpha=0.9,
                        label=f"{row['strategy']} (n={len(row.get('seeds', [])) or '?'})")
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)
            ax.set_xlabel("labeled documents")
            ax.set_ylabel(f"test {labels.get(metric, metric)}")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8, loc="lower right")
        if title:
            fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
