"""Experiment results as PNG plots: the pieces every experiment's plot is made of, and the
plots two experiments share (per-scenario bars; AUC beside paired gains)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from recsys.eval.report import header, over_seeds  # noqa: E402


def plot_per_scenario(results: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 5))
    bars(ax, results)
    ax.set_title(f"Per-scenario AUC, {over_seeds(results)} ({results['seeds']} seed(s))")
    save(fig, path)


def bars(ax, results: dict) -> None:
    """Grouped bars: one group per column, one bar per model (mean ± std), Bayes markers."""
    cols, models = results["columns"], results["models"]
    x = grouped_bars(ax, cols, {name: m["auc"] for name, m in models.items()})
    oracle = [results["oracle_auc"][c] or np.nan for c in cols]
    if any(o == o for o in oracle):  # generated data: its true click probability's AUC
        ax.scatter(x, oracle, marker="_", s=900, color="black", label="Bayes (p_true)",
                   zorder=3)
    values = [v for m in models.values() for c in cols if (v := m["auc"][c]["mean"])]
    low = min(values) - 0.02 if values else 0.5
    high = max([o for o in oracle if o == o] + [v + 0.01 for v in values] + [low + 0.05])
    ax.set_ylim(low, high + 0.01)
    many = len(cols) > 6  # long labels would overlap
    ax.set_xticks(x, header(results), rotation=20 if many else 0,
                  ha="right" if many else "center")
    ax.set_ylabel("test AUC")
    ax.legend(ncol=min(len(models) + 1, 4), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.22 if many else -0.08), frameon=False)


def grouped_bars(ax, cols: list[str], series: dict[str, dict]) -> np.ndarray:
    """One group of bars per column, one bar per series ({column: {"mean", "std"}}), with the
    std as error bars; returns the groups' x positions."""
    x = np.arange(len(cols))
    width = 0.8 / max(len(series), 1)
    for i, (name, cells) in enumerate(series.items()):
        means = [np.nan if cells[c]["mean"] is None else cells[c]["mean"] for c in cols]
        stds = [cells[c]["std"] or 0.0 for c in cols]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=name)
    return x


def save(fig, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def plot_paired(results: dict, path: Path, gain: str = "the modality") -> None:
    """The AUC of every arm and, beside it, the paired gains."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 5))
    bars(left, results)
    left.set_title(f"AUC, {over_seeds(results)} ({results['seeds']} seed(s))")
    cols = results["columns"]
    x = grouped_bars(right, cols, {name: g["auc"] for name, g in results["gains"].items()})
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks(x, header(results), rotation=20, ha="right")
    right.set_ylabel("AUC gain (with − without)")
    right.set_title(f"Gain from {gain}, paired by seed")
    right.legend(fontsize=8)
    save(fig, path)
