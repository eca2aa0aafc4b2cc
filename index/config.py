"""The declarative build configuration an ops team keeps in version control (``lists.toml``).

::

    [index]
    thresholds = { pdq = 31, phash = 10 }   # index-wide overrides
    max_invalid = "1%"
    strict = false
    exclude = ["false-positives.txt"]     # paths relative to this file

    [banks]                               # live banks, folded into each build
    path = "banks"                        # default: the index's own banks/ directory
    names = ["MODERATORS"]                # default: every bank there
    thresholds = { pdq = 31 }
    enabled = true

    [[lists]]
    name = "clearinghouse"                # defaults to the file's stem
    path = "lists/clearinghouse.csv"
    format = "auto"                       # csv | lines | hex | jsonl
    algorithm = "pdq"                     # for files that do not say
    thresholds = { pdq = 28 }
    enabled = true
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashmatch.errors import HashmatchError, IndexBuildError
from hashmatch.index.artifact import BANKS
from hashmatch.index.build import BuildOptions, ListSource
from hashmatch.lists import DEFAULT_MAX_INVALID, Exclusions, parse_fraction, read_exclusions
from hashmatch.lists.readers import LIST_FORMATS
from hashmatch.registry import get_algorithm

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["BankSourceConfig", "BuildConfig", "load_config"]

_INDEX_KEYS = {"thresholds", "max_invalid", "strict", "exclude", "allow_empty", "keep_versions"}
_LIST_KEYS = {"name", "path", "format", "algorithm", "thresholds", "enabled"}
_BANK_KEYS = {"path", "names", "thresholds", "enabled"}


@dataclass(frozen=True)
class BankSourceConfig:
    """The ``[banks]`` section: which live banks a build folds in."""

    path: Path | None = None
    """The bank directory (None: the built index's ``banks/``)."""
    names: list[str] | None = None
    thresholds: dict[str, int] = field(default_factory=dict)

    def directory(self, index: str | Path) -> Path:
        return self.path if self.path is not None else Path(index) / BANKS


@dataclass
class BuildConfig:
    sources: list[ListSource] = field(default_factory=list)
    options: BuildOptions = field(default_factory=BuildOptions)
    banks: BankSourceConfig | None = None


def load_config(path: str | Path) -> BuildConfig:
    """Parse ``path``; every mistake is an IndexBuildError naming the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexBuildError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IndexBuildError(f"{path}: invalid TOML: {exc}") from None
    base = path.parent
    unknown = set(data) - {"index", "lists", "banks"}
    if unknown:
        raise IndexBuildError(f"{path}: unknown section(s) {sorted(unknown)}")
    index = data.get("index", {})
    _check_keys(path, "[index]", index, _INDEX_KEYS)
    try:
        exclusions = Exclusions()
        for item in index.get("exclude", []):
            exclusions.merge(read_exclusions(base / item))
        options = BuildOptions(
            thresholds=_thresholds(path, "[index] thresholds", index.get("thresholds", {})),
            strict=bool(index.get("strict", False)),
            max_invalid=parse_fraction(index.get("max_invalid", DEFAULT_MAX_INVALID)),
            exclusions=exclusions,
            allow_empty=bool(index.get("allow_empty", False)),
            keep_versions=int(index.get("keep_versions", 3)),
        )
    except ValueError as exc:
        raise IndexBuildError(f"{path}: [index]: {exc}") from None
    sources = []
    for number, item in enumerate(data.get("lists", []), start=1):
        where = f"[[lists]] #{number}"
        _check_keys(path, where, item, _LIST_KEYS)
        if not item.get("enabled", True):
            continue
        if "path" not in item:
            raise IndexBuildError(f"{path}: {where} has no path")
        list_format = item.get("format", "auto")
        if list_format not in (*LIST_FORMATS, "auto"):
            raise IndexBuildError(f"{path}: {where}: unknown format {list_format!r}")
        algorithm = item.get("algorithm")
        try:
            if algorithm is not None:
                algorithm = get_algorithm(algorithm).name
        except HashmatchError as exc:
            raise IndexBuildError(f"{path}: {where}: {exc}") from None
        sources.append(
            ListSource(
                path=base / item["path"],
                list_name=item.get("name"),
                algorithm=algorithm,
                list_format=list_format,
                thresholds=_thresholds(path, f"{where} thresholds", item.get("thresholds", {})),
            )
        )
    banks = _banks(path, data.get("banks"))
    if not sources and banks is None:
        raise IndexBuildError(f"{path}: no enabled [[lists]] or [banks]")
    return BuildConfig(sources, options, banks)


def _banks(path: Path, table: Any) -> BankSourceConfig | None:
    if table is None:
        return None
    _check_keys(path, "[banks]", table, _BANK_KEYS)
    if not table.get("enabled", True):
        return None
    names = table.get("names")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
    ):
        raise IndexBuildError(f"{path}: [banks] names must be a list of bank names")
    where = table.get("path")
    if where is not None and not isinstance(where, str):
        raise IndexBuildError(f"{path}: [banks] path must be a string")
    return BankSourceConfig(
        path=path.parent / where if where is not None else None,
        names=names,
        thresholds=_thresholds(path, "[banks] thresholds", table.get("thresholds", {})),
    )


def _check_keys(path: Path, where: str, table: Any, allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise IndexBuildError(f"{path}: {where} must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise IndexBuildError(f"{path}: {where}: unknown key(s) {sorted(unknown)}")


def _thresholds(path: Path, where: str, table: Any) -> dict[str, int]:
    if not isinstance(table, dict):
        raise IndexBuildError(f"{path}: {where} must be a table like {{ pdq = 31 }}")
    result = {}
    for name, value in table.items():
        try:
            algorithm = get_algorithm(name).name
        except HashmatchError as exc:
            raise IndexBuildError(f"{path}: {where}: {exc}") from None
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 <= value <= get_algorithm(algorithm).bits
        ):
            raise IndexBuildError(
                f"{path}: {where}: {name} must be an integer 0..{get_algorithm(algorithm).bits}"
            )
        result[algorithm] = value
    return result
