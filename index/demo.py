"""The end-to-end demo: hash known images into a list, build an index, scan uploads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hashmatch.batch import HashJob, hash_files
from hashmatch.fixtures.demo import DemoUpload, build_demo_world
from hashmatch.hashes import Hash
from hashmatch.index.build import EntryList, build_index
from hashmatch.index.matcher import Matcher
from hashmatch.index.results import MatchResult

__all__ = ["DemoRow", "run_demo"]

_LABEL = "demo known image"


@dataclass(frozen=True)
class DemoRow:
    upload: DemoUpload
    result: MatchResult

    @property
    def correct(self) -> bool:
        if self.upload.source is None:
            return self.result.status in ("no_match", "error")
        entry = f"known/{self.upload.source.name}"
        return self.result.status == "match" and any(
            m.entry_id == entry for m in self.result.matches
        )


def run_demo(directory: Path) -> tuple[Path, list[DemoRow]]:
    """Build the world under ``directory``; returns the index path and one row per upload."""
    world = build_demo_world(directory)
    known: list[tuple[str, Hash, str, str, str]] = []
    for outcome in hash_files([str(p) for p in world.known], HashJob(("pdq", "md5"))):
        assert outcome.result is not None, outcome.error
        entry = f"known/{Path(str(outcome.path)).name}"
        for algorithm in ("pdq", "md5"):
            known.append((algorithm, outcome.result[algorithm], "demo-list", entry, _LABEL))
    index = directory / "index"
    build_index([EntryList(known, name="demo-list")], index)
    matcher = Matcher.open(index)
    by_path = {str(upload.path): upload for upload in world.uploads}
    rows = [
        DemoRow(by_path[str(result.source)], result)
        for result in matcher.match_many([str(u.path) for u in world.uploads])
    ]
    return index, rows
