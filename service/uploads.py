"""Decoding and hashing uploads in worker processes, off the server's event loop.

A server process answers lookups on its event loop and must never stall on a big JPEG, a
decompression bomb or a decoder that crashes or hangs; so every upload is hashed by a
:class:`~hashmatch.worker_pool.WorkerPool` of spawn processes. The time limit holds there
(each worker's own timer, and the pool killing a worker still busy a second later); a decoder
crash costs that one upload a ``crashed`` error, never the server.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from hashmatch.batch import DeferredSource, HashJob, HashOutcome, HashTask, crashed_task, hash_task
from hashmatch.errors import WorkerError
from hashmatch.worker_pool import WorkerPool

__all__ = ["ServerBusy", "Upload", "UploadHasher"]


class ServerBusy(Exception):
    """Every hashing process is busy and the waiting line is full (HTTP 503)."""


@dataclass(frozen=True)
class Upload(DeferredSource):
    """An upload's bytes and the name the client gave them (its multipart file name), which
    errors quote; hashed as a file so md5/sha256 come from the bytes as sent."""

    data: bytes
    name: str = "<upload>"

    def load(self) -> io.BytesIO:
        return _NamedBytes(self.data, self.name)


class _NamedBytes(io.BytesIO):
    """Bytes read as a file that has a name (the loader quotes it in errors)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


class UploadHasher:
    """``await hasher.hash(upload, job)``: the upload's :class:`HashOutcome`, never raising
    for a bad image; :class:`ServerBusy` when too many uploads wait already."""

    def __init__(self, workers: int, time_limit: float | None, max_waiting: int) -> None:
        self._pool: WorkerPool[HashTask, HashOutcome] = WorkerPool(
            hash_task,
            workers=workers,
            crashed=crashed_task,
            time_limit=time_limit,
            max_waiting=max_waiting,
        )

    async def hash(self, upload: Upload, job: HashJob) -> HashOutcome:
        try:
            future = self._pool.submit((upload, job))
        except WorkerError as exc:
            raise ServerBusy(str(exc)) from None
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.close()
