"""The bounded HTTP load generator of ``bench/serve.py``, and the CPU accounting around it.

The generator is the benchmark's own process: one thread and one keep-alive connection per
concurrent client, so it shares the cores with the server it measures. That is why every
phase also reads CPU time, of this process (:func:`own_cpu_seconds`) and of the server's
(:func:`cpu_seconds`): the cost of a request is reported on both sides, not guessed.
http.client is the default connection because it costs about a third of httpx's CPU per
request; httpx stays selectable to show what a heavier client does to the numbers.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import numpy as np

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Call:
    """One request, and how to tell a right 200 answer from a wrong one."""

    method: str
    target: str
    body: bytes | None = None
    content_type: str | None = None
    right: Callable[[bytes], bool] = lambda body: True


class StdlibConnection:
    """One keep-alive http.client connection: the cheapest client per request, so the
    generator takes as little of the server's cores as it can."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        host = parts.hostname or "127.0.0.1"
        self.connection = http.client.HTTPConnection(host, parts.port, timeout=30)

    def send(self, call: Call) -> tuple[int, bytes]:
        """The status and body of ``call``'s answer; on a failure the connection is closed,
        so the next call reconnects instead of reusing a broken one."""
        headers = {"content-type": call.content_type} if call.content_type else {}
        try:
            self.connection.request(call.method, call.target, body=call.body, headers=headers)
            response = self.connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next request reconnects
            raise

    def close(self) -> None:
        self.connection.close()


class HttpxConnection:
    """One keep-alive httpx client, for comparing what a heavier client costs."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def send(self, call: Call) -> tuple[int, bytes]:
        """The status and body of ``call``'s answer."""
        headers = {"content-type": call.content_type} if call.content_type else {}
        answer = self.client.request(call.method, call.target, content=call.body, headers=headers)
        return answer.status_code, answer.content

    def close(self) -> None:
        self.client.close()


CLIENTS: dict[str, type[StdlibConnection] | type[HttpxConnection]] = {
    "stdlib": StdlibConnection,
    "httpx": HttpxConnection,
}


@dataclass
class Load:
    """What one phase measured."""

    label: str
    concurrency: int
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    """Requests that got no answer, or not a 200."""
    wrong: int = 0
    """200 answers that said the wrong thing (a hit not found, a known image not matched)."""
    problem: str | None = None
    client_cpu_s: float = float("nan")
    server_cpu_s: float = float("nan")
    """CPU of the server's processes (of a library call: this process and its workers)."""
    hashing_cpu_s: float = float("nan")
    """Of which the hashing processes'."""
    server_ms: list[float] = field(default_factory=list)
    per_process: list[int] = field(default_factory=list)
    """Requests each server process answered (from the request log)."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    def ms(self, q: float) -> float:
        """The ``q``-th latency percentile in ms; nan when nothing was answered."""
        return float(np.percentile(self.latencies, q) * 1e3) if self.latencies else float("nan")

    def cpu_ms(self, seconds: float) -> float:
        """``seconds`` of CPU spread over the phase's requests, in ms a request."""
        return seconds * 1e3 / self.requests if self.requests else float("nan")


@dataclass(frozen=True)
class Bounds:
    """What ends a phase (whichever comes first), its warm-up, and the connection kind: every
    phase is bounded so a slow server makes a short report, never a hung benchmark."""

    requests: int
    seconds: float
    warmup: float
    client: str


def generate_load(
    base_url: str,
    calls: list[Call],
    concurrency: int,
    bounds: Bounds,
    label: str,
    stop: threading.Event | None = None,
) -> Load:
    """``concurrency`` threads, one connection each, sending ``calls`` in turn until
    ``bounds.requests`` are sent, ``bounds.seconds`` pass or ``stop`` is set."""
    load, lock, counter = Load(label, concurrency), threading.Lock(), itertools.count()
    barrier = threading.Barrier(concurrency + 1)
    deadline = time.perf_counter() + bounds.seconds + 60  # reset once every thread is ready

    def client(slot: int) -> None:
        connection = CLIENTS[bounds.client](base_url)
        latencies, unanswered, errors, wrong, problem = [], 0, 0, 0, None
        barrier.wait()
        try:
            while stop is None or not stop.is_set():
                number = next(counter)
                if number >= bounds.requests or time.perf_counter() > deadline:
                    break
                call = calls[(number + slot) % len(calls)]
                started = time.perf_counter()
                try:
                    status, body = connection.send(call)
                except (OSError, http.client.HTTPException, httpx.HTTPError) as exc:
                    unanswered += 1
                    problem = problem or f"{type(exc).__name__}: {exc}"
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1
                    problem = problem or f"HTTP {status}: {body[:160]!r}"
                elif not call.right(body):
                    wrong += 1
                    problem = problem or f"wrong answer to {call.target[:50]}: {body[:160]!r}"
        finally:
            connection.close()
            with lock:
                load.latencies += latencies
                load.requests += len(latencies) + unanswered
                load.errors += errors + unanswered
                load.wrong += wrong
                load.problem = load.problem or problem

    threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in range(concurrency)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + bounds.seconds
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(bounds.seconds + 60)
    load.seconds = time.perf_counter() - started
    return load


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes ``pids`` have used so far; a process gone counts 0,
    so a difference of two readings is what the survivors spent between them."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return total


def own_cpu_seconds() -> float:
    """This process's user and system CPU so far (every thread: the load generator's)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
