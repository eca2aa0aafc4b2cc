"""Reading one hash list with a policy for bad lines, and the statistics a build reports.

By default a bad line is skipped and reported (a nightly rebuild must not die on one corrupt
upstream line), but the list fails when its invalid fraction exceeds ``max_invalid``: a file in
the wrong format is an error, not a silently empty list. ``strict`` fails on the first bad line.
Reading streams in chunks, so memory does not grow with the list.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashmatch.errors import HashListError, OptionError
from hashmatch.hashes import Hash
from hashmatch.lists.readers import LIST_FORMATS, RowBatch, detect_format, read_batches
from hashmatch.lists.validate import ValidChunk, validate_batch
from hashmatch.registry import get_algorithm

__all__ = [
    "DEFAULT_MAX_INVALID",
    "HashListReader",
    "ListEntry",
    "ListReading",
    "ListStats",
    "parse_fraction",
    "read_hash_list",
]

DEFAULT_MAX_INVALID = 0.01
KEPT_PROBLEMS = 20


def parse_fraction(value: str | float) -> float:
    """``"1%"``, ``"0.01"`` or ``0.01`` -> 0.01; refuses values outside 0..1."""
    text = str(value).strip()
    try:
        fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise OptionError(f"not a fraction or percentage: {value!r}") from None
    if not 0.0 <= fraction <= 1.0:
        raise OptionError(f"must be between 0 and 1 (or 0% and 100%): {value!r}")
    return fraction


@dataclass(frozen=True)
class ListEntry:
    """One known hash from a list, with what the list says about it."""

    algorithm: str
    hash: Hash
    list: str
    entry_id: str | None
    label: str | None
    metadata: dict[str, str]
    line: int


@dataclass
class ListStats:
    """What reading one list found, for the build report."""

    source: str
    list_name: str
    list_format: str
    sha256: str = ""
    rows: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    """The first :data:`KEPT_PROBLEMS` problems as ``file:line: reason``."""

    @property
    def invalid_fraction(self) -> float:
        judged = sum(self.accepted.values()) + self.rejected
        return self.rejected / judged if judged else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.list_name,
            "source": self.source,
            "format": self.list_format,
            "sha256": self.sha256,
            "rows": self.rows,
            "accepted": dict(self.accepted),
            "rejected": self.rejected,
            "skipped": self.skipped,
            "rejected_by_reason": dict(self.reasons.most_common()),
            "first_problems": list(self.problems),
        }


class ListReading:
    """Validation and the bad-line policy over a list's rows, wherever they come from.

    Subclasses supply the rows (:meth:`_batches`) and a checksum of what was read
    (:meth:`_digest`); iterate :meth:`chunks` (for builds) or :meth:`entries`.
    """

    def __init__(
        self,
        source: str,
        list_name: str,
        list_format: str,
        *,
        algorithm: str | None = None,
        strict: bool = False,
        max_invalid: float | str = DEFAULT_MAX_INVALID,
    ) -> None:
        if algorithm is not None:
            algorithm = get_algorithm(algorithm).name
        self.algorithm = algorithm
        self.strict = strict
        self.max_invalid = parse_fraction(max_invalid)
        self.stats = ListStats(source, list_name, list_format)

    def chunks(self) -> Iterator[ValidChunk]:
        """Valid hashes in chunks; raises :class:`HashListError` per the policy."""
        for batch in self._batches():
            self.stats.rows += batch.rows
            self.stats.skipped += batch.skipped
            yield self._validate(batch)
        self.stats.sha256 = self._digest()
        self._check_policy()

    def entries(self) -> Iterator[ListEntry]:
        """Every valid entry as an object (convenient; builds use :meth:`chunks`)."""
        for chunk in self.chunks():
            batch = chunk.batch
            for algorithm, positions in chunk.positions.items():
                for code, i in zip(chunk.codes[algorithm], positions, strict=True):
                    yield ListEntry(
                        algorithm,
                        Hash(algorithm, code.tobytes()),
                        batch.lists[i] or self.stats.list_name,
                        batch.entry_ids[i],
                        batch.labels[i],
                        batch.extras[i] or {},
                        batch.lines[i],
                    )

    def _batches(self) -> Iterator[RowBatch]:
        raise NotImplementedError

    def _digest(self) -> str:
        raise NotImplementedError

    def _validate(self, batch: RowBatch) -> ValidChunk:
        chunk, problems = validate_batch(batch, self.algorithm)
        for algorithm, kept in chunk.positions.items():
            self.stats.accepted[algorithm] += len(kept)
        source = self.stats.source
        for line, kind, reason in problems:
            if self.strict:
                raise HashListError(source, line, reason)
            self.stats.rejected += 1
            self.stats.reasons[kind] += 1
            if len(self.stats.problems) < KEPT_PROBLEMS:
                self.stats.problems.append(f"{source}:{line}: {reason}")
        return chunk

    def _check_policy(self) -> None:
        stats = self.stats
        accepted = sum(stats.accepted.values())
        if accepted == 0 and stats.rejected == 0:
            return  # an empty list is the caller's to judge
        if accepted == 0 or stats.invalid_fraction > self.max_invalid:
            first = "; ".join(stats.problems[:3])
            raise HashListError(
                stats.source,
                None,
                f"{stats.rejected} of {stats.rejected + accepted} hashes invalid"
                f" ({stats.invalid_fraction:.1%}), above the allowed {self.max_invalid:.1%}"
                f" (--max-invalid); wrong format or algorithm? First problems: {first}",
            )


class HashListReader(ListReading):
    """Reads one list file (CSV, ``ALGORITHM HASH`` lines, plain hex, JSONL)."""

    def __init__(
        self,
        path: str | Path,
        *,
        algorithm: str | None = None,
        list_name: str | None = None,
        list_format: str = "auto",
        strict: bool = False,
        max_invalid: float | str = DEFAULT_MAX_INVALID,
    ) -> None:
        self.path = _list_path(path)
        if list_format != "auto" and list_format not in LIST_FORMATS:
            choices = ", ".join(("auto", *LIST_FORMATS))
            raise OptionError(f"list_format must be one of {choices}, got {list_format!r}")
        if list_name is not None and not isinstance(list_name, str):
            raise OptionError(f"list_name must be a string, got {type(list_name).__name__}")
        super().__init__(
            str(self.path),
            list_name or self.path.stem,
            detect_format(self.path) if list_format == "auto" else list_format,
            algorithm=algorithm,
            strict=strict,
            max_invalid=max_invalid,
        )

    def _batches(self) -> Iterator[RowBatch]:
        return read_batches(self.path, self.stats.list_format)

    def _digest(self) -> str:
        return _file_sha256(self.path)


def read_hash_list(
    path: str | Path,
    *,
    algorithm: str | None = None,
    list_name: str | None = None,
    list_format: str = "auto",
    strict: bool = False,
    max_invalid: float = DEFAULT_MAX_INVALID,
) -> Iterator[ListEntry]:
    """Stream the valid entries of the list at ``path`` (see :class:`HashListReader`)."""
    reader = HashListReader(
        path,
        algorithm=algorithm,
        list_name=list_name,
        list_format=list_format,
        strict=strict,
        max_invalid=max_invalid,
    )
    return reader.entries()


def _list_path(path: str | Path) -> Path:
    """``path`` as a Path to an existing regular file, or a HashListError saying why not."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
        raise HashListError(
            repr(path), None, f"a list path must be a path, got {type(path).__name__}"
        )
    name = os.fspath(path)
    if not name:
        raise HashListError("''", None, "the list path is empty")
    if "\0" in name:
        raise HashListError(name.replace("\0", "\\0"), None, "the path holds a NUL byte")
    result = Path(name)
    if result.is_dir():
        raise HashListError(name, None, "is a directory, not a list file")
    if not result.is_file():
        raise HashListError(name, None, "no such file")
    return result


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
