"""The on-disk index: a directory of immutable versions and a pointer to the published one.

::

    INDEX/
      CURRENT                  name of the published version (replaced atomically)
      .lock                    held by a build while it writes and publishes
      versions/<version>/
        manifest.json          format, counts, thresholds, lists, a checksum per file and its own
        entries.sqlite         one row per list entry (list, id, label, metadata)
        <algorithm>.codes      unique codes, one row of bytes each
        <algorithm>.keys       64-bit row keys in ascending order (the codes' order)
        <algorithm>.entry_offsets / .entry_rows   code -> entry rows (CSR)
        <algorithm>.mih_buckets / .mih_starts / .mih_ids
                               multi-index hashing tables, when used (format 3; format 2
                               stored one offset per bucket, and loads with the flat scan)

Arrays are raw little-endian binary whose dtype and shape the manifest records; nothing is
ever unpickled. Every file's SHA-256 is in the manifest and checked before use, and (from
format 2) the manifest carries a SHA-256 of its own content.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from hashmatch import __version__
from hashmatch.errors import IndexBuildError, IndexFormatError, IndexIntegrityError

__all__ = [
    "CURRENT",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "MANIFEST_CHECKSUM",
    "METADATA",
    "MIH_BITMAP_FORMAT",
    "VERSIONS",
    "ArrayWriter",
    "Manifest",
    "current_version",
    "file_sha256",
    "fsync_directory",
    "manifest_checksum",
    "new_manifest",
    "naming_write_errors",
    "part_problem",
    "part_problems",
    "read_array",
    "read_manifest",
    "checked_index_path",
    "resolve_version",
    "row_keys",
    "write_manifest",
    "write_synced_text",
]

FORMAT_NAME = "hashmatch-index"
FORMAT_VERSION = 3
MIH_BITMAP_FORMAT = 3
"""The first format whose multi-index tables are occupancy bitmaps (see :mod:`.mih`); older
multi-index tables are not read, and those algorithms are searched by the flat scan."""
"""2 added the manifest's own checksum; format 1 manifests (without it) are still read."""
CURRENT = "CURRENT"
VERSIONS = "versions"
BANKS = "banks"
"""Where an index's live banks are kept unless a directory is given (:mod:`hashmatch.banks`)."""
MANIFEST = "manifest.json"
MANIFEST_CHECKSUM = "manifest_sha256"
METADATA = "entries.sqlite"
"""The version's list entries (:mod:`hashmatch.index.entry_store`)."""

_KEY_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


def row_keys(codes: np.ndarray) -> np.ndarray:
    """A 64-bit key per code row: equal rows, equal keys (part of the format: never change).

    Codes are stored sorted by this key; exact lookups and diffs binary-search it.
    """
    padded = codes
    if codes.shape[1] % 8:
        padded = np.zeros((len(codes), -(-codes.shape[1] // 8) * 8), dtype=np.uint8)
        padded[:, : codes.shape[1]] = codes
    words = np.ascontiguousarray(padded).view("<u8")
    keys = np.zeros(len(codes), dtype=np.uint64)
    for column in range(words.shape[1]):
        keys += words[:, column] * _KEY_MULTIPLIERS[column % 4]
    keys ^= keys >> np.uint64(29)
    return keys


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def naming_write_errors(path: Path) -> Iterator[None]:
    """Turn a failed write (disk full, file size limit) into an IndexBuildError naming the file,
    so a build fails with a message an operator can act on."""
    try:
        yield
    except OSError as exc:
        raise IndexBuildError(f"{path}: cannot write ({exc.strerror or exc})") from exc


class ArrayWriter:
    """Writes arrays into a version directory, recording checksum, dtype and shape."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, dict[str, Any]] = {}

    def write(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        array = array.astype(dtype, copy=False)
        digest = hashlib.sha256()
        path = self.directory / name
        with naming_write_errors(path), open(path, "wb") as file:
            _write_blocks(file, array, digest)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(path, 0o600)
        self.files[name] = {
            "sha256": digest.hexdigest(),
            "bytes": array.nbytes,
            "dtype": dtype.str,
            "shape": list(array.shape),
        }

    def add_file(self, name: str) -> None:
        """Record a file written by other means (the SQLite database)."""
        path = self.directory / name
        with naming_write_errors(path), open(path, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(path, 0o600)
        self.files[name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def _write_blocks(file: BinaryIO, array: np.ndarray, digest: Any) -> None:
    flat = array.reshape(-1).view(np.uint8) if array.size else np.zeros(0, np.uint8)
    step = 1 << 24
    for start in range(0, len(flat), step):
        block = flat[start : start + step]
        digest.update(block)
        file.write(block.tobytes())


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of one version."""

    path: Path
    data: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def algorithms(self) -> dict[str, dict[str, Any]]:
        return self.data["algorithms"]

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data["files"]

    def searched_by(self, algorithm: str) -> str:
        """The structure searches of ``algorithm`` use: the recorded kind, except ``flat`` for
        multi-index tables older than :data:`MIH_BITMAP_FORMAT`."""
        kind = str(self.algorithms[algorithm]["search"]["kind"])
        outdated = kind == "mih" and self.data["format_version"] < MIH_BITMAP_FORMAT
        return "flat" if outdated else kind


_LIST_KEYS = ("name", "source", "format", "sha256", "rows", "accepted", "rejected", "excluded")


def new_manifest(
    version: str,
    created: str,
    entries: int,
    algorithms: dict[str, dict[str, Any]],
    lists: list[tuple[dict[str, Any], dict[str, int]]],
    files: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """A version's manifest content: what :func:`write_manifest` writes last.

    ``lists`` pairs each list's build report entry with its own thresholds; the manifest
    keeps the report's counts and the list's source and checksum.
    """
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "created": created,
        "version": version,
        "entries": entries,
        "algorithms": algorithms,
        "lists": [
            {
                **{key: item[key] for key in _LIST_KEYS},
                "thresholds": thresholds,
                **({"bank": item["bank"]} if "bank" in item else {}),
            }
            for item, thresholds in lists
        ],
        "files": files,
    }


def manifest_checksum(data: dict[str, Any]) -> str:
    """SHA-256 of everything else the manifest says, as canonical JSON: a damaged manifest is
    refused even where the damage touches no file checksum (counts, lists, thresholds)."""
    content = {key: value for key, value in data.items() if key != MANIFEST_CHECKSUM}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def write_manifest(directory: Path, data: dict[str, Any]) -> None:
    """Write a version's manifest, checksummed and synced (it is the last file of a version)."""
    path = directory / MANIFEST
    text = json.dumps({**data, MANIFEST_CHECKSUM: manifest_checksum(data)}, indent=2) + "\n"
    with naming_write_errors(path):
        write_synced_text(path, text)


def write_synced_text(path: Path, text: str) -> None:
    """Write ``text`` owner-only and fsync it, so a rename that publishes it publishes all of
    it even after a power loss."""
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(path, 0o600)


def read_manifest(directory: Path) -> Manifest:
    """Parse and check a version's manifest; raises IndexFormatError naming what is wrong."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFormatError(
            f"{directory}: no {MANIFEST}: not a hashmatch index version"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexIntegrityError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path}: not a hashmatch index manifest")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise IndexFormatError(f"{path}: manifest has no format_version")
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: index format version {version} is newer than this hashmatch supports"
            f" ({FORMAT_VERSION}); upgrade hashmatch or rebuild the index"
        )
    _check_manifest_checksum(path, data)
    for key in ("version", "algorithms", "files", "lists"):
        if key not in data:
            raise IndexIntegrityError(f"{path}: manifest lacks {key!r}")
    return Manifest(path, data)


def _check_manifest_checksum(path: Path, data: dict[str, Any]) -> None:
    """Required from format 2; checked whenever present, so damage to the format version
    cannot turn the check off."""
    recorded = data.get(MANIFEST_CHECKSUM)
    if recorded is None and data["format_version"] < 2:
        return
    if recorded is None:
        raise IndexIntegrityError(f"{path}: manifest has no {MANIFEST_CHECKSUM}")
    if recorded != manifest_checksum(data):
        raise IndexIntegrityError(f"{path}: manifest checksum mismatch (corrupt or modified)")


def current_version(index: Path) -> str | None:
    """The published version's name, or None when nothing is published yet."""
    try:
        name = (index / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IndexFormatError(f"{index}: cannot read {CURRENT}: {exc}") from None
    except UnicodeDecodeError:
        raise IndexIntegrityError(f"{index / CURRENT}: not a version name (not UTF-8)") from None
    if not name or "/" in name or name.startswith("."):
        raise IndexIntegrityError(f"{index / CURRENT}: invalid version name {name!r}")
    return name


def checked_index_path(path: object) -> Path:
    """``path`` as a Path, or an IndexFormatError saying why it cannot name an index."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
        raise IndexFormatError(f"an index path must be a path, got {type(path).__name__}")
    name = os.fspath(path)
    if not name:
        raise IndexFormatError("the index path is empty")
    if "\0" in name:
        shown = name.replace("\0", "\\0")
        raise IndexFormatError(f"{shown}: the path holds a NUL byte")
    return Path(name)


def resolve_version(path: Path) -> Path:
    """The version directory for ``path``: an index root (its published version) or a version."""
    if (path / MANIFEST).is_file():
        return path
    if not path.exists():
        raise IndexFormatError(f"{path}: no such index")
    name = current_version(path)
    if name is None:
        raise IndexFormatError(f"{path}: not a hashmatch index (no {CURRENT} and no {MANIFEST})")
    directory = path / VERSIONS / name
    if not directory.is_dir():
        raise IndexIntegrityError(f"{path}: {CURRENT} names {name!r}, which does not exist")
    return directory


def part_problem(manifest: Manifest, name: str, *, checksum: bool = True) -> str | None:
    """What is wrong with one file of a version (missing, wrong size, altered), or None."""
    entry = manifest.files.get(name)
    if entry is None:
        return f"{name}: not listed in the manifest"
    path = manifest.directory / name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{name}: missing"
    if size != entry["bytes"]:
        return f"{name}: {size} bytes, manifest says {entry['bytes']}"
    if checksum and file_sha256(path) != entry["sha256"]:
        return f"{name}: checksum mismatch (corrupt or modified)"
    return None


def part_problems(manifest: Manifest) -> list[str]:
    """Every file's problem, checksums included; two files at a time (hashing frees the GIL)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.map(lambda name: part_problem(manifest, name), sorted(manifest.files))
        return [problem for problem in found if problem]


def read_array(manifest: Manifest, name: str) -> np.ndarray:
    """Map one array file read-only after checking its size (checksums: :func:`part_problems`)."""
    problem = part_problem(manifest, name, checksum=False)
    if problem is not None:
        raise IndexIntegrityError(f"{manifest.directory}/{problem}")
    entry = manifest.files[name]
    path = manifest.directory / name
    dtype = np.dtype(entry["dtype"])
    shape = tuple(entry["shape"])
    size = entry["bytes"]
    if int(np.prod(shape)) * dtype.itemsize != size:
        raise IndexIntegrityError(f"{path}: shape {shape} of {dtype} does not fill {size} bytes")
    if size == 0:
        return np.zeros(shape, dtype=dtype)
    # A plain ndarray view of the read-only mapping: np.memmap's Python-level __getitem__
    # costs more than the lookups themselves; the view keeps the mapping alive.
    return np.asarray(np.memmap(path, dtype=dtype, mode="r", shape=shape))
