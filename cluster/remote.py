"""Files named by URL (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``) through pyarrow.

pyarrow resolves a URL to a filesystem configured the standard way (for S3 the ``AWS_*``
environment variables, ``AWS_ENDPOINT_URL`` included, so an S3-compatible store works). A
listed file is named by its URL in records and read by its filesystem path under the root URL
it was listed from; one filesystem per root URL is kept per process, since resolving one can
cost a network round trip (S3 looks up the bucket's region).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hashmatch.errors import ImageReadError
from hashmatch.loading import ImageLimits, check_byte_size

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = ["RemoteFile", "is_url", "list_url", "read_remote"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_filesystems: dict[str, tuple[pyarrow.fs.FileSystem, str]] = {}
_filesystems_lock = threading.Lock()


@dataclass(frozen=True)
class RemoteFile:
    url: str
    """How records name it."""
    root: str
    """The URL it was listed under (which says the filesystem)."""
    path: str
    """Its path in that filesystem."""
    size: int | None
    in_directory: bool = False
    """Found under a directory URL: an image only if its content (or name) says so."""


def is_url(source: str) -> bool:
    """True for ``scheme://...`` (``file://`` included: read through pyarrow too); a plain
    path is local, even one holding a colon."""
    return bool(_URL.match(source))


def _resolve(root: str) -> tuple[pyarrow.fs.FileSystem, str]:
    import pyarrow.fs

    with _filesystems_lock:
        if root not in _filesystems:
            _filesystems[root] = pyarrow.fs.FileSystem.from_uri(root)
        return _filesystems[root]


def list_url(url: str, recursive: bool) -> Iterator[RemoteFile | tuple[str, str]]:
    """Every file under ``url`` (or ``url`` itself), sorted; ``(url, reason)`` where it
    cannot be listed (not found, no access, no such service)."""
    import pyarrow.fs

    root = url.rstrip("/") if not url.endswith("://") else url
    try:
        filesystem, base = _resolve(root)
        info = filesystem.get_file_info(base)
        if info.type == pyarrow.fs.FileType.File:
            yield RemoteFile(url, root, base, info.size)
            return
        if info.type == pyarrow.fs.FileType.NotFound:
            yield url, "no such file or directory"
            return
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(base, recursive=recursive))
    except (OSError, ValueError) as exc:  # pyarrow's errors for network, auth, bad URLs
        yield url, f"cannot list: {exc}"
        return
    for item in sorted(infos, key=lambda item: item.path):
        if item.type == pyarrow.fs.FileType.File and item.path.startswith(base):
            url_of = root + item.path[len(base) :]
            yield RemoteFile(url_of, root, item.path, item.size, in_directory=True)


def read_remote(file: RemoteFile, limits: ImageLimits) -> bytes:
    """The whole file, refused unread when its listed size is over the limit (as a local
    file is); raises ImageReadError or ImageTooLargeError naming the URL."""
    if file.size is not None:
        check_byte_size(file.url, file.size, limits)
    try:
        filesystem, _ = _resolve(file.root)
        with filesystem.open_input_stream(file.path) as stream:
            data = stream.read(limits.max_bytes + 1)
    except (OSError, ValueError) as exc:
        raise ImageReadError(file.url, str(exc)) from None
    check_byte_size(file.url, len(data), limits)
    return bytes(data)
