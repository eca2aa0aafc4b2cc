"""Measuring detection quality: recall on edited copies of known images, false positives on
pairs of distinct images.

The given images become the known set: their hashes make a list, the list an index, exactly as
a user's would. Every image is then edited by each transform and matched through the same
:class:`~hashmatch.index.matcher.Matcher` path an upload takes (dihedral variants, trimmed
borders, the low-quality rule), so recall is the product's, not a bare hash comparison's.
Distances are measured alongside (the smallest over the query hashes the matcher searches), to
show how much margin each transform leaves and to draw recall against false-positive curves.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashmatch.batch import HashJob, crashed_outcome, describe_error, hash_file
from hashmatch.errors import EvaluationError
from hashmatch.fixtures.transforms import DEFAULT_SUITE, apply_transform
from hashmatch.hashing import HashResult
from hashmatch.index.build import BuildOptions, ListSource, build_index
from hashmatch.index.matcher import Matcher
from hashmatch.index.results import MatchResult
from hashmatch.index.verdict import low_quality_algorithms, nearest_distances, query_codes
from hashmatch.loading import load_image
from hashmatch.parallel import WorkerCrash, parallel_map
from hashmatch.registry import resolve_algorithms

__all__ = ["EvalOptions", "EvalResult", "TransformScore", "evaluate"]

_LIST_NAME = "known"


@dataclass(frozen=True)
class EvalOptions:
    transforms: tuple[str, ...] = DEFAULT_SUITE
    algorithms: tuple[str, ...] = ("pdq", "phash", "dhash")
    dihedral: bool = True
    trim_borders: bool = True
    recover: bool = True
    """Also match with a small crop or tilt undone (:mod:`hashmatch.recovery`), as
    ``hashmatch scan`` does by default."""
    thresholds: Mapping[str, int] = field(default_factory=dict)
    """Per-algorithm overrides of the index's default thresholds."""
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
class _Job:
    path: str
    transforms: tuple[str, ...]
    hashing: HashJob


@dataclass
class _Hashed:
    path: str
    query: HashResult | None = None
    """The image itself as an upload: variants and trimming as the matcher sees it. Its own
    hashes (``query[algorithm]``) are the ones a list of the known images holds."""
    edited: dict[str, HashResult | str] = field(default_factory=dict)
    """Per transform, the edited copy's hashes or why it failed."""
    error: str | None = None


def _hash_job(job: _Job) -> _Hashed:
    """Everything one image contributes; failures become values (this runs in workers). The
    image is hashed as a scan would hash the file, then decoded in full for the edits."""
    hashed = _Hashed(job.path)
    outcome = hash_file(job.path, job.hashing)
    if outcome.result is None:
        hashed.error = outcome.error
        return hashed
    hashed.query = outcome.result
    if not job.transforms:
        return hashed
    try:
        picture = load_image(job.path, exact=True, limits=job.hashing.limits).image
    except Exception as exc:
        hashed.error = describe_error(exc)
        return hashed
    for name in job.transforms:
        try:
            edited = apply_transform(name, picture)
        except Exception as exc:
            hashed.edited[name] = describe_error(exc)
            continue
        outcome = hash_file(edited, job.hashing)
        hashed.edited[name] = outcome.result if outcome.result is not None else str(outcome.error)
    return hashed


def _crashed_job(job: _Job, crash: WorkerCrash) -> _Hashed:
    return _Hashed(job.path, error=crashed_outcome(job.path, crash).error)


def evaluate(
    images: Iterable[str],
    options: EvalOptions = EvalOptions(),
    *,
    distractors: Iterable[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Edit, hash and match every image; see the module docstring. Raises EvaluationError when
    no image can be hashed."""
    specs = resolve_algorithms(options.algorithms)
    algorithms = tuple(a.name for a in specs)
    exact = [a.name for a in specs if not a.needs_pixels]
    if exact:
        raise EvaluationError(
            f"eval measures perceptual algorithms; {', '.join(exact)} only match identical files"
        )
    known_paths, other_paths = list(images), list(distractors)

    hashing = HashJob(
        algorithms,
        dihedral=options.dihedral,
        trim_borders=options.trim_borders,
        recover=options.recover,
    )
    jobs = [_Job(path, options.transforms, hashing) for path in known_paths]
    jobs += [_Job(path, (), hashing) for path in other_paths]
    hashed: list[_Hashed] = []
    for done, item in enumerate(
        parallel_map(_hash_job, jobs, workers=options.workers, ordered=True, crashed=_crashed_job)
    ):
        hashed.append(item)
        if progress:
            progress(done + 1, len(jobs))
    known = [h for h in hashed[: len(known_paths)] if h.error is None]
    others = [h for h in hashed[len(known_paths) :] if h.error is None]
    failed = {h.path: h.error for h in hashed if h.error is not None}
    if not known:
        raise EvaluationError("no known image could be hashed: " + "; ".join(failed.values()))
    with tempfile.TemporaryDirectory(prefix="hashmatch-eval-") as work:
        index = _build_known_index(Path(work), known, algorithms, options)
        with Matcher.open(index, verify=False) as matcher:
            bits = {a.name: a.bits for a in specs}
            return _score(matcher, known, others, failed, bits, options)


def _build_known_index(
    work: Path, known: list[_Hashed], algorithms: tuple[str, ...], options: EvalOptions
) -> Path:
    listing = work / "known.csv"
    with listing.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["algorithm", "hash", "id", "label"])
        for number, item in enumerate(known):
            for algorithm in algorithms:
                stored = item.query[algorithm]  # type: ignore[index]
                writer.writerow([algorithm, stored.hex, str(number), Path(item.path).name])
    build_options = BuildOptions(thresholds=dict(options.thresholds), allow_empty=False)
    build_index([ListSource(listing, _LIST_NAME)], work / "index", build_options)
    return work / "index"


def _verdict(matcher: Matcher, result: HashResult, options: EvalOptions) -> MatchResult:
    # the index was built with the evaluation's thresholds: no per-call override is needed
    return matcher.verdict(result, dihedral=options.dihedral)


def _score(
    matcher: Matcher,
    known: list[_Hashed],
    others: list[_Hashed],
    failed: dict[str, str],
    bits: dict[str, int],
    options: EvalOptions,
) -> EvalResult:
    """``bits``: the code size of every algorithm evaluated."""
    algorithms = tuple(bits)
    stored = {
        algorithm: np.frombuffer(
            b"".join(item.query[algorithm].value for item in known),  # type: ignore[index]
            dtype=np.uint8,
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
    for number, item in enumerate(known):
        for name, edited in item.edited.items():
            if isinstance(edited, str):
                for algorithm in algorithms:
                    scores[algorithm][name].errors += 1
                continue
            verdict = _verdict(matcher, edited, options)
            low = low_quality_algorithms(edited)
            for algorithm in algorithms:
                score = scores[algorithm][name]
                score.total += 1
                own = [m for m in verdict.matches if m.algorithm == algorithm]
                score.found += any(m.entry_id == str(number) for m in own)
                score.wrong += any(m.entry_id != str(number) for m in own)
                score.low_quality += algorithm in low
                codes = query_codes(edited, algorithm, options.dihedral)
                own_code = stored[algorithm][number : number + 1]
                distance = int(nearest_distances(codes, own_code)[0])
                score.histogram[distance] += 1
    false_histograms = {a: np.zeros(bits[a] + 1, np.int64) for a in algorithms}
    false_matches = dict.fromkeys(algorithms, 0)
    pairs = 0
    for number, item in enumerate([*known, *others]):
        query = item.query
        assert query is not None
        own_id = str(number) if number < len(known) else None
        verdict = _verdict(matcher, query, options)
        for match in verdict.matches:
            if match.entry_id != own_id:
                false_matches[match.algorithm] += 1
        for algorithm in algorithms:
            codes = query_codes(query, algorithm, options.dihedral)
            distances = nearest_distances(codes, stored[algorithm])
            if own_id is not None:
                distances = np.delete(distances, number)
            false_histograms[algorithm] += np.bincount(distances, minlength=bits[algorithm] + 1)
        pairs += len(known) - (own_id is not None)
    thresholds = {a: matcher.threshold(a, _LIST_NAME) for a in algorithms}
    return EvalResult(
        [item.path for item in known],
        [item.path for item in others],
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
    true = sum(score.histogram for score in result.scores[algorithm].values())
    false = result.false_histograms[algorithm]
    true_total, false_total = max(int(true.sum()), 1), max(int(false.sum()), 1)
    true_cumulative, false_cumulative = np.cumsum(true), np.cumsum(false)
    for threshold in range(len(true)):
        yield (
            threshold,
            float(true_cumulative[threshold]) / true_total,
            float(false_cumulative[threshold]) / false_total,
        )
