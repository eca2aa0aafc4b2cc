"""What a build did, for people (text) and for scripts (JSON via ``--report``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AlgorithmSummary", "BuildReport", "CodeDiff"]


@dataclass
class CodeDiff:
    """Unique codes added and removed between two versions, per algorithm."""

    added: int = 0
    removed: int = 0
    unchanged: int = 0


@dataclass
class AlgorithmSummary:
    name: str
    entries: int
    codes: int
    duplicates_merged: int
    excluded: int
    threshold: int
    index_kind: str
    diff: CodeDiff | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "entries": self.entries,
            "codes": self.codes,
            "duplicates_merged": self.duplicates_merged,
            "excluded": self.excluded,
            "threshold": self.threshold,
            "index_kind": self.index_kind,
        }
        if self.diff is not None:
            data["added"] = self.diff.added
            data["removed"] = self.diff.removed
        return data


@dataclass
class BuildReport:
    index: str
    version: str
    previous_version: str | None
    created: str
    elapsed_seconds: float
    lists: list[dict[str, Any]] = field(default_factory=list)
    algorithms: dict[str, AlgorithmSummary] = field(default_factory=dict)
    removed_versions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "version": self.version,
            "previous_version": self.previous_version,
            "created": self.created,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "lists": self.lists,
            "algorithms": {name: s.to_json() for name, s in self.algorithms.items()},
            "removed_versions": self.removed_versions,
        }

    def render_text(self) -> str:
        lines = [f"published {self.version} to {self.index} in {self.elapsed_seconds:.1f}s"]
        for item in self.lists:
            accepted = ", ".join(f"{a} {n}" for a, n in item["accepted"].items()) or "nothing"
            lines.append(
                f"  list {item['name']} ({item['source']}, {item['format']}): accepted"
                f" {accepted}; rejected {item['rejected']}; excluded {item['excluded']};"
                f" skipped {item['skipped']}"
            )
            lines.extend(f"    {problem}" for problem in item["first_problems"][:5])
            if item["rejected"] > 5:
                reasons = ", ".join(f"{r}: {n}" for r, n in item["rejected_by_reason"].items())
                lines.append(f"    ({item['rejected']} rejected in all: {reasons})")
        for name, summary in self.algorithms.items():
            change = ""
            if summary.diff is not None:
                change = f"; +{summary.diff.added} -{summary.diff.removed} vs previous"
            lines.append(
                f"  {name}: {summary.codes} unique hashes from {summary.entries} entries"
                f" ({summary.duplicates_merged} duplicates merged, {summary.excluded}"
                f" excluded), threshold {summary.threshold}, {summary.index_kind} search{change}"
            )
        if self.previous_version is None:
            lines.append("  first version of this index")
        return "\n".join(lines)
