"""One index version for a whole cluster scan: pinned on the driver, checked on every actor.

Every node opens the index from the same path (a shared volume, or its own copy). The driver
pins the version published there when the scan starts, by name and manifest checksum; each
actor opens exactly that version directory, never ``CURRENT`` (which a rebuild may move
mid-scan, or an actor restarted later would see), and refuses a node whose copy lacks it or
holds something else under its name. Records of one scan thus always come from one version.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from hashmatch.errors import HashmatchError, IndexVersionError
from hashmatch.index.artifact import (
    MANIFEST_CHECKSUM,
    VERSIONS,
    checked_index_path,
    read_manifest,
    resolve_version,
)
from hashmatch.index.matcher import Matcher
from hashmatch.index.options import MatchOptions

__all__ = ["IndexPin", "open_pinned", "pin_index"]


@dataclass(frozen=True)
class IndexPin:
    """The index a scan runs on: where every node finds it, and which version it must be."""

    path: str
    """The index as given (a root or a version directory), the same path on every node."""
    version: str
    checksum: str
    """The version's manifest checksum: a different copy under the same name differs here."""
    algorithms: tuple[str, ...]

    def matched_algorithms(self, options: MatchOptions) -> tuple[str, ...]:
        """What a scan with ``options`` hashes and records: its own list, else the index's."""
        return tuple(options.algorithms) if options.algorithms is not None else self.algorithms


def pin_index(path: str | Path) -> IndexPin:
    """The version published at ``path`` now (raises the index's own errors if unreadable)."""
    checked = checked_index_path(path)
    manifest = read_manifest(resolve_version(checked))
    return IndexPin(
        path=str(checked),
        version=manifest.version,
        checksum=str(manifest.data.get(MANIFEST_CHECKSUM, "")),
        algorithms=tuple(manifest.algorithms),
    )


def open_pinned(pin: IndexPin, *, verify: bool = True) -> Matcher:
    """The pinned version as this machine holds it; IndexVersionError if it does not."""
    where = f"{socket.gethostname()}: {pin.path}"
    root = Path(pin.path)
    directory = root / VERSIONS / pin.version
    if not directory.is_dir():
        try:
            # opened as a version directory, or an index without that version
            found = read_manifest(resolve_version(root)).version
        except HashmatchError as exc:
            raise IndexVersionError(
                f"{where}: cannot open the index the scan runs on (version {pin.version}):"
                f" {exc}; every node must see the index at this path"
            ) from None
        if found != pin.version:
            raise IndexVersionError(
                f"{where}: this node has no index version {pin.version}, which the scan runs"
                f" on (it has {found}); ship that version to every node, or start the"
                " scan again"
            )
        directory = resolve_version(root)
    manifest = read_manifest(directory)
    checksum = str(manifest.data.get(MANIFEST_CHECKSUM, ""))
    if checksum != pin.checksum:
        raise IndexVersionError(
            f"{where}: this node's copy of index version {pin.version} differs from the"
            f" driver's (manifest checksum {checksum[:12]} here, {pin.checksum[:12]} there);"
            " copy the same index to every node"
        )
    return Matcher.open(directory, verify=verify)
