"""Banks as a build's list sources: each bank an :class:`~hashmatch.index.build.EntryList`.

A build reads each log once, through its last record, and judges every content at one time:
what is enabled then goes in, under the bank's name, with its content id as the entry id (so
HMA's ``bank_content_id`` is the id itself) and its note as the label. The position and time
go into the manifest (``bank``), which is how a server's overlay knows what the version holds.
Active exclusions of every bank join the build's exclusions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from hashmatch.banks.directory import BankDirectory
from hashmatch.banks.state import BankState
from hashmatch.errors import IndexBuildError
from hashmatch.hashes import Hash
from hashmatch.index.build import BuildOptions, EntryList, Source
from hashmatch.index.config import BuildConfig
from hashmatch.lists import Exclusions
from hashmatch.lists.reader import ListEntry

__all__ = ["bank_sources", "config_sources"]


def bank_sources(
    path: str | Path,
    *,
    names: list[str] | None = None,
    thresholds: dict[str, int] | None = None,
    now: float | None = None,
) -> tuple[list[EntryList], Exclusions]:
    """The banks of ``path`` (or only ``names``) as lists, and their exclusions."""
    directory = BankDirectory(path)
    directory.refresh()
    moment = time.time() if now is None else now
    chosen = directory.existing()
    if names is not None:
        known = {state.name for state in chosen}
        missing = [name for name in names if name not in known]
        if missing:
            raise IndexBuildError(f"{path}: no bank(s) {', '.join(missing)}")
        chosen = [state for state in chosen if state.name in names]
    sources = [
        EntryList(
            _entries(state, moment),
            name=state.name,
            thresholds=dict(thresholds or {}),
            bank={"through": state.last_seq, "at": moment, "directory": str(Path(path).resolve())},
        )
        for state in chosen
    ]
    exclusions = Exclusions()
    for state in directory.banks.values():
        for kind, first, second in state.active_exclusions():
            if kind == "hash":
                exclusions.hashes.setdefault(first, set()).add(bytes.fromhex(second))
            else:
                exclusions.list_entries.add((first, second))
    return sources, exclusions


def _entries(state: BankState, moment: float) -> Iterator[ListEntry]:
    for entry in list(state.entries.values()):
        if entry.enabled_through(state.last_seq, moment):
            for algorithm, value in entry.signals.items():
                yield ListEntry(
                    algorithm,
                    Hash.from_hex(algorithm, value),
                    state.name,
                    str(entry.id),
                    entry.note,
                    entry.match_metadata(),
                    entry.id,
                )


def config_sources(config: BuildConfig, index: str | Path) -> tuple[list[Source], BuildOptions]:
    """A ``lists.toml``'s sources and options with its ``[banks]`` folded in: the banks'
    lists after the files', their exclusions added to the build's."""
    sources: list[Source] = list(config.sources)
    options = config.options
    if config.banks is not None:
        lists, exclusions = bank_sources(
            config.banks.directory(index),
            names=config.banks.names,
            thresholds=config.banks.thresholds,
        )
        sources.extend(lists)
        merged = Exclusions()
        merged.merge(options.exclusions)
        merged.merge(exclusions)
        # an index of banks only may be empty: every content deleted is a real state
        options = replace(
            options, exclusions=merged, allow_empty=options.allow_empty or not config.sources
        )
    return sources, options
