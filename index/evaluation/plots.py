"""The evaluation's plots (matplotlib, from the optional ``eval`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hashmatch.index.evaluation.run import EvalResult, recall_curve

__all__ = ["PlotsUnavailable", "draw_plots"]


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable(
            "matplotlib is not installed (pip install 'hashmatch[eval]')"
        ) from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as pyplot

    return pyplot


def draw_plots(result: EvalResult, directory: Path) -> list[Path]:
    """recall.png, one distances-ALG.png per algorithm and curves.png; the paths written."""
    pyplot = _pyplot()
    paths = [_recall_bars(pyplot, result, directory)]
    for algorithm in result.scores:
        paths.append(_distance_histograms(pyplot, result, algorithm, directory))
    paths.append(_curves(pyplot, result, directory))
    return paths


def _recall_bars(pyplot: Any, result: EvalResult, directory: Path) -> Path:
    transforms = list(result.options.transforms)
    algorithms = list(result.scores)
    figure, axes = pyplot.subplots(figsize=(max(8, len(transforms) * 0.45), 4.5))
    width = 0.8 / len(algorithms)
    positions = np.arange(len(transforms))
    for number, algorithm in enumerate(algorithms):
        recall = [result.scores[algorithm][t].recall * 100 for t in transforms]
        axes.bar(positions + number * width, recall, width, label=algorithm)
    axes.set_xticks(positions + width * (len(algorithms) - 1) / 2)
    axes.set_xticklabels(transforms, rotation=60, ha="right", fontsize=8)
    axes.set_ylabel("recall at the threshold (%)")
    axes.set_ylim(0, 105)
    axes.legend(fontsize=8)
    axes.set_title("Recall per transform")
    return _save(pyplot, figure, directory / "recall.png")


def _distance_histograms(pyplot: Any, result: EvalResult, algorithm: str, directory: Path) -> Path:
    true = np.sum([score.histogram for score in result.scores[algorithm].values()], axis=0)
    false = result.false_histograms[algorithm]
    distances = np.arange(len(true))
    figure, axes = pyplot.subplots(figsize=(8, 4))
    axes.bar(distances, true / max(true.sum(), 1), width=1.0, alpha=0.6, label="edited copies")
    axes.bar(distances, false / max(false.sum(), 1), width=1.0, alpha=0.6, label="distinct images")
    threshold = result.thresholds[algorithm]
    axes.axvline(threshold + 0.5, color="black", linestyle="--", label=f"threshold {threshold}")
    axes.set_xlabel("Hamming distance")
    axes.set_ylabel("share of pairs")
    axes.legend(fontsize=8)
    axes.set_title(f"{algorithm}: distances of true and false pairs")
    return _save(pyplot, figure, directory / f"distances-{algorithm}.png")


def _curves(pyplot: Any, result: EvalResult, directory: Path) -> Path:
    figure, axes = pyplot.subplots(figsize=(6, 4.5))
    floor = 1 / max(result.false_pairs, 1) / 2
    for algorithm in result.scores:
        points = list(recall_curve(result, algorithm))
        rates = [max(rate, floor) for _, _, rate in points]
        axes.plot(rates, [recall * 100 for _, recall, _ in points], label=algorithm)
        threshold = result.thresholds[algorithm]
        _, recall, rate = points[threshold]
        axes.plot([max(rate, floor)], [recall * 100], "o", color="black")
    axes.set_xscale("log")
    axes.set_xlabel(f"false-positive rate (pairs; {floor:.1e} stands for none)")
    axes.set_ylabel("recall over all transforms (%)")
    axes.legend(fontsize=8)
    axes.set_title("Recall against false positives (dots: default thresholds)")
    return _save(pyplot, figure, directory / "curves.png")


def _save(pyplot: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
