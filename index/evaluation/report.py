"""Writing an evaluation: ``results.json`` (everything), ``report.md`` (tables), PNG plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hashmatch import __version__
from hashmatch.index.evaluation.run import EvalResult, recall_curve

__all__ = ["results_json", "write_report"]


def _quantiles(histogram: np.ndarray) -> dict[str, int | None]:
    total = int(histogram.sum())
    if total == 0:
        return {"min": None, "p50": None, "p90": None, "max": None}
    cumulative = np.cumsum(histogram)
    present = np.nonzero(histogram)[0]

    def at(share: float) -> int:
        return int(np.searchsorted(cumulative, share * total))

    return {"min": int(present[0]), "p50": at(0.5), "p90": at(0.9), "max": int(present[-1])}


def _safe_threshold(result: EvalResult, algorithm: str) -> int | None:
    """The largest threshold at which no pair of distinct images matched (None: none)."""
    present = np.nonzero(result.false_histograms[algorithm])[0]
    return int(present[0]) - 1 if len(present) else None


def results_json(result: EvalResult) -> dict[str, Any]:
    options = result.options
    algorithms: dict[str, Any] = {}
    for algorithm, scores in result.scores.items():
        false = result.false_histograms[algorithm]
        threshold = result.thresholds[algorithm]
        algorithms[algorithm] = {
            "threshold": threshold,
            "transforms": {
                name: {
                    "recall": score.recall,
                    "found": score.found,
                    "total": score.total,
                    "low_quality": score.low_quality,
                    "wrong_matches": score.wrong,
                    "errors": score.errors,
                    "distance": _quantiles(score.histogram),
                    "histogram": score.histogram.tolist(),
                }
                for name, score in scores.items()
            },
            "false_pairs": {
                "pairs": result.false_pairs,
                "matched": result.false_matches[algorithm],
                "rate": result.false_matches[algorithm] / max(result.false_pairs, 1),
                "within_threshold": int(false[: threshold + 1].sum()),
                "largest_threshold_without_false_pairs": _safe_threshold(result, algorithm),
                "distance": _quantiles(false),
                "histogram": false.tolist(),
            },
            "curve": [
                {"threshold": t, "recall": r, "false_positive_rate": f}
                for t, r, f in recall_curve(result, algorithm)
            ],
        }
    return {
        "tool": f"hashmatch {__version__}",
        "images": result.images,
        "distractors": result.distractors,
        "failed": result.failed,
        "options": {
            "transforms": list(options.transforms),
            "algorithms": list(result.scores),
            "dihedral": options.matching.dihedral,
            "trim_borders": options.matching.trim_borders,
            "recover": options.matching.recover,
            "thresholds": result.thresholds,
        },
        "algorithms": algorithms,
    }


def _markdown(result: EvalResult, plots: list[str], plot_note: str | None) -> str:
    options = result.options
    algorithms = list(result.scores)
    lines = [
        "# hashmatch eval",
        "",
        f"{len(result.images)} known images, {len(result.distractors)} distractors, "
        f"{len(options.transforms)} transforms. Matching as a scan does: dihedral "
        f"{'on' if options.matching.dihedral else 'off'}, border trimming "
        f"{'on' if options.matching.trim_borders else 'off'}, crop/tilt recovery "
        f"{'on' if options.matching.recover else 'off'}; thresholds "
        + ", ".join(f"{a} {t}" for a, t in result.thresholds.items())
        + ".",
        "",
    ]
    if result.failed:
        lines += [f"{len(result.failed)} images could not be hashed and take no part:", ""]
        lines += [f"- `{path}`: {reason}" for path, reason in sorted(result.failed.items())]
        lines.append("")
    lines += [
        "## Recall per transform",
        "",
        "Share of edited copies matched to their own entry; in brackets the median and largest "
        "distance to the original (the smallest over the hashes the matcher searches).",
        "",
        "| transform | " + " | ".join(algorithms) + " |",
        "|---|" + "---|" * len(algorithms),
    ]
    for name in options.transforms:
        cells = []
        for algorithm in algorithms:
            score = result.scores[algorithm][name]
            spread = _quantiles(score.histogram)
            extra = f" ({spread['p50']} / {spread['max']})" if score.total else ""
            flags = f", {score.wrong} wrong" if score.wrong else ""
            flags += f", {score.errors} errors" if score.errors else ""
            cells.append(f"{score.recall * 100:.1f}%{extra}{flags}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## False positives",
        "",
        f"{result.false_pairs:,} ordered pairs of distinct images (each known image and "
        "distractor as a query against every other known image).",
        "",
        "| algorithm | threshold | matched pairs | rate | closest distinct pair "
        "| largest threshold with no false pair |",
        "|---|---|---|---|---|---|",
    ]
    for algorithm in algorithms:
        false = result.false_histograms[algorithm]
        matched = result.false_matches[algorithm]
        closest = _quantiles(false)["min"]
        safe = _safe_threshold(result, algorithm)
        lines.append(
            f"| {algorithm} | {result.thresholds[algorithm]} | {matched} "
            f"| {matched / max(result.false_pairs, 1):.2e} | {closest} "
            f"| {'-' if safe is None else safe} |"
        )
    lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    if plot_note:
        lines += [plot_note, ""]
    return "\n".join(lines)


def write_report(result: EvalResult, directory: str | os.PathLike[str]) -> list[Path]:
    """Write results.json, report.md and the plots into ``directory``; the files written."""
    from hashmatch.index.evaluation.plots import PlotsUnavailable, draw_plots

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    results = target / "results.json"
    results.write_text(json.dumps(results_json(result), indent=1) + "\n", encoding="utf-8")
    written.append(results)
    note = None
    try:
        plots = draw_plots(result, target)
    except PlotsUnavailable as exc:
        plots, note = [], f"Plots were not drawn: {exc}"
    written.extend(plots)
    report = target / "report.md"
    report.write_text(_markdown(result, [p.name for p in plots], note), encoding="utf-8")
    written.append(report)
    return written
