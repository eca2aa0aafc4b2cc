"""Running an evaluation: recall on edited copies of known images, false positives on pairs of
distinct images, both measured through the product's own pipeline.

1. The known images and the distractors are hashed as a scan would hash them
   (:func:`~hashmatch.batch.hash_files`).
2. The known images' hashes become a list and the list an index, exactly as a user's would
   (:func:`~hashmatch.index.build.build_index` from entries in memory).
3. Every known image is edited by each transform, in the worker that hashes the copy
   (:class:`EditedCopy`), and matched by :meth:`Matcher.match_many
   <hashmatch.index.matcher.Matcher.match_many>`: dihedral variants, trimmed borders,
   recovery and the quality rule apply as they do to an upload.
4. Every image (known ones and distractors) is matched against the others' entries through
   :meth:`~hashmatch.index.matcher.Matcher.verdict` to count false positives.

Distances are measured alongside (the smallest over the hashes the matcher searches, from
:func:`~hashmatch.index.verdict.query_codes`), to show how much margin each transform leaves
and to draw recall against false-positive curves.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from hashmatch.batch import DeferredSource, HashOutcome, hash_files
from hashmatch.errors import EvaluationError
from hashmatch.hashing import HashResult
from hashmatch.index.build import BuildOptions, EntryList, build_index
from hashmatch.index.evaluation.transforms import DEFAULT_SUITE, apply_transform
from hashmatch.index.matcher import Matcher
from hashmatch.index.options import MatchOptions
from hashmatch.index.results import MatchResult
from hashmatch.index.verdict import low_quality_algorithms, nearest_distances, query_codes
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits, load_image
from hashmatch.once import shared_table
from hashmatch.registry import resolve_algorithms

__all__ = [
    "DEFAULT_EVAL_MATCHING",
    "EditedCopy",
    "EvalOptions",
    "EvalResult",
    "TransformScore",
    "evaluate",
    "recall_curve",
]

_LIST_NAME = "known"
Item = TypeVar("Item")

DEFAULT_EVAL_MATCHING = MatchOptions(algorithms=("pdq", "phash", "dhash"), recover=True)
"""What ``hashmatch eval`` measures by default: PDQ and the two strongest 64-bit hashes,
matched as ``hashmatch scan`` matches (crop and tilt recovery on)."""


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """An evaluation: which edits, how to match (thresholds go into the index it builds, as
    a user's lists would), and how many processes hash."""

    transforms: tuple[str, ...] = DEFAULT_SUITE
    matching: MatchOptions = DEFAULT_EVAL_MATCHING
    workers: int = 1


@dataclass
class TransformScore:
    """Recall of one algorithm on one transform (the keys of :attr:`EvalResult.scores`), and
    the distances behind it."""

    found: int = 0
    """Edited copies matched to their own entry."""
    total: int = 0
    """Edited copies hashed (images that failed to load or edit are not counted)."""
    low_quality: int = 0
    wrong: int = 0
    """Edited copies matched to another known image's entry."""
    errors: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Copies by distance to their original (index = distance)."""

    @property
    def recall(self) -> float:
        return self.found / self.total if self.total else 0.0


@dataclass
class EvalResult:
    images: list[str]
    distractors: list[str]
    failed: dict[str, str]
    """Images that could not be hashed (path -> reason); they take no part."""
    options: EvalOptions
    thresholds: dict[str, int]
    scores: dict[str, dict[str, TransformScore]]
    """By algorithm, then transform."""
    false_histograms: dict[str, np.ndarray]
    """By algorithm: pairs of distinct images by distance (query's variants included)."""
    false_pairs: int
    false_matches: dict[str, int]
    """By algorithm: distinct-image pairs the matcher reported as a match."""


@dataclass(frozen=True)
class EditedCopy(DeferredSource):
    """One known image edited by one transform, made in the worker that hashes it."""

    path: str
    transform: str
    limits: ImageLimits = DEFAULT_LIMITS

    def load(self) -> Image.Image:
        return apply_transform(self.transform, _original(self.path, self.limits))


@shared_table(maxsize=8)
def _original(path: str, limits: ImageLimits) -> Image.Image:
    """A known image's full pixels, decoded once per process for all its edits (transforms
    return new images and never change this one)."""
    return load_image(path, exact=True, limits=limits).image


@dataclass
class _Known:
    number: int
    path: str
    query: HashResult
    """The image itself as an upload: its own hashes are the ones its list entry holds."""


def evaluate(
    images: Iterable[str],
    options: EvalOptions = EvalOptions(),
    *,
    distractors: Iterable[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Edit, hash and match every image; see the module docstring. ``progress(done, total)``
    is called as images are hashed and edits matched. Raises EvaluationError when no image
    can be hashed or an algorithm only matches identical files."""
    matching = options.matching
    specs = resolve_algorithms(matching.algorithms or DEFAULT_EVAL_MATCHING.algorithms or ())
    exact = [a.name for a in specs if not a.needs_pixels]
    if exact:
        raise EvaluationError(
            f"eval measures perceptual algorithms; {', '.join(exact)} only match identical files"
        )
    algorithms = tuple(a.name for a in specs)
    known_paths, other_paths = list(images), list(distractors)
    steps = _Steps(progress, len(known_paths) * (1 + len(options.transforms)) + len(other_paths))
    job = matching.hash_job(algorithms)
    outcomes = list(
        steps.counted(hash_files([*known_paths, *other_paths], job, workers=options.workers))
    )
    failed = {str(o.path): str(o.error) for o in outcomes if o.result is None}
    known = [
        _Known(n, path, outcome.result)
        for n, (path, outcome) in enumerate(_hashed(known_paths, outcomes[: len(known_paths)]))
        if outcome.result is not None
    ]
    others = list(_hashed(other_paths, outcomes[len(known_paths) :]))
    if not known:
        raise EvaluationError("no known image could be hashed: " + "; ".join(failed.values()))
    steps.expect(len(known) * (1 + len(options.transforms)) + len(other_paths))
    with tempfile.TemporaryDirectory(prefix="hashmatch-eval-") as work:
        index = _build_known_index(Path(work), known, algorithms, matching)
        with Matcher.open(index, verify=False) as matcher:
            # the index holds the thresholds, as a user's would: the calls add none
            calls = dataclasses.replace(matching, algorithms=algorithms, thresholds={})
            edits = [
                EditedCopy(item.path, name, matching.limits)
                for item in known
                for name in options.transforms
            ]
            matched = steps.counted(matcher.match_many(edits, calls, workers=options.workers))
            results = {_position(result): result for result in matched}
            verdicts = [
                [results[n * len(options.transforms) + t] for t in range(len(options.transforms))]
                for n in range(len(known))
            ]
            bits = {a.name: a.bits for a in specs}
            return _score(matcher, calls, known, others, verdicts, failed, bits, options)


def _position(result: MatchResult) -> int:
    """Where an edit was in the stream ``match_many`` matched (deferred sources are named so)."""
    assert isinstance(result.source, int)
    return result.source


def _hashed(paths: list[str], outcomes: list[HashOutcome]) -> Iterator[tuple[str, HashOutcome]]:
    for path, outcome in zip(paths, outcomes, strict=True):
        if outcome.result is not None:
            yield path, outcome


class _Steps:
    """Reports progress over both phases as one count."""

    def __init__(self, report: Callable[[int, int], None] | None, total: int) -> None:
        self._report, self.total, self.done = report, total, 0

    def expect(self, total: int) -> None:
        self.total = total

    def counted(self, items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            self.done += 1
            if self._report:
                self._report(self.done, self.total)
            yield item


def _build_known_index(
    work: Path, known: list[_Known], algorithms: tuple[str, ...], matching: MatchOptions
) -> Path:
    entries = [
        (algorithm, item.query[algorithm], None, str(item.number), Path(item.path).name)
        for item in known
        for algorithm in algorithms
    ]
    options = BuildOptions(thresholds=dict(matching.thresholds), allow_empty=False)
    build_index([EntryList(entries, name=_LIST_NAME)], work / "index", options)
    return work / "index"


def _score(
    matcher: Matcher,
    calls: MatchOptions,
    known: list[_Known],
    others: list[tuple[str, HashOutcome]],
    verdicts: list[list[MatchResult]],
    failed: dict[str, str],
    bits: dict[str, int],
    options: EvalOptions,
) -> EvalResult:
    """``bits``: the code size of every algorithm evaluated."""
    algorithms = tuple(bits)
    dihedral = calls.dihedral
    stored = {
        algorithm: np.frombuffer(
            b"".join(item.query[algorithm].value for item in known), dtype=np.uint8
        ).reshape(len(known), -1)
        for algorithm in algorithms
    }
    scores = {
        algorithm: {
            name: TransformScore(histogram=np.zeros(bits[algorithm] + 1, np.int64))
            for name in options.transforms
        }
        for algorithm in algorithms
    }
    for item, row in zip(known, verdicts, strict=True):
        own_id = str(item.number)
        for name, verdict in zip(options.transforms, row, strict=True):
            edited = verdict.hash_result
            if edited is None:  # the edit or its hashing failed
                for algorithm in algorithms:
                    scores[algorithm][name].errors += 1
                continue
            low = low_quality_algorithms(edited)
            for algorithm in algorithms:
                score = scores[algorithm][name]
                score.total += 1
                own = [m for m in verdict.matches if m.algorithm == algorithm]
                score.found += any(m.entry_id == own_id for m in own)
                score.wrong += any(m.entry_id != own_id for m in own)
                score.low_quality += algorithm in low
                codes = query_codes(edited, algorithm, dihedral)
                own_code = stored[algorithm][item.number : item.number + 1]
                score.histogram[int(nearest_distances(codes, own_code)[0])] += 1
    false_histograms = {a: np.zeros(bits[a] + 1, np.int64) for a in algorithms}
    false_matches = dict.fromkeys(algorithms, 0)
    pairs = 0
    queries: list[tuple[str | None, HashResult]] = [(str(i.number), i.query) for i in known]
    queries += [(None, outcome.result) for _, outcome in others if outcome.result is not None]
    for number, (query_id, query) in enumerate(queries):
        for match in matcher.verdict(query, calls).matches:
            if match.entry_id != query_id:
                false_matches[match.algorithm] += 1
        for algorithm in algorithms:
            distances = nearest_distances(
                query_codes(query, algorithm, dihedral), stored[algorithm]
            )
            if query_id is not None:
                distances = np.delete(distances, number)
            false_histograms[algorithm] += np.bincount(distances, minlength=bits[algorithm] + 1)
        pairs += len(known) - (query_id is not None)
    thresholds = {a: matcher.threshold(a, _LIST_NAME) for a in algorithms}
    return EvalResult(
        [item.path for item in known],
        [path for path, _ in others],
        failed,
        options,
        thresholds,
        scores,
        false_histograms,
        pairs,
        false_matches,
    )


def recall_curve(result: EvalResult, algorithm: str) -> Iterator[tuple[int, float, float]]:
    """``(threshold, recall, false-positive rate)`` at every threshold, transforms pooled."""
    true = np.sum([score.histogram for score in result.scores[algorithm].values()], axis=0)
    false = result.false_histograms[algorithm]
    true_total, false_total = max(int(true.sum()), 1), max(int(false.sum()), 1)
    true_cumulative, false_cumulative = np.cumsum(true), np.cumsum(false)
    for threshold in range(len(true)):
        yield (
            threshold,
            float(true_cumulative[threshold]) / true_total,
            float(false_cumulative[threshold]) / false_total,
        )
