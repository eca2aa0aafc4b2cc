"""Service benchmark: hashmatch serve under load, 1 and 2 server processes, against the library.

    python bench/serve.py [--sizes 1000000,10000000] [--quick] [--work DIR] [--seconds 10]
                          [--requests 50000] [--workers 1,2] [--client stdlib|httpx]

Builds (once: cached under ``--work``) PDQ indexes of ``--sizes`` random codes plus the PDQ of
a few 1 MP JPEGs, starts ``hashmatch serve`` as a real process on 127.0.0.1 and measures, per
server-process count, requests/s, p50/p99 latency and errors of:

* ``GET /m/raw_lookup`` (one PDQ hash; half hits: stored codes with 1-8 bits flipped, half
  misses) at concurrency 1 and 16; while that route answers 404, ``POST /v1/lookup`` with one
  query stands in and the rows say so;
* ``POST /v1/lookup`` with 100 hashes a request, at concurrency 1 and 16;
* ``POST /v1/match`` with a 1 MP JPEG (half of them known), at concurrency 2 and 4;
* raw_lookup and /v1/match together while 10 new versions of a small index are published
  (``--reload-interval 1``, and SIGHUP after every other one): errors must be zero and the
  served version must change;
* the library on the same cores: ``Matcher.lookup`` (one query, a loop) and
  ``Matcher.match_many(paths, workers=2)``, so the HTTP overhead is a ratio;
* the memory of every server and hashing process (VmRSS, and Pss, which splits the shared
  memory-mapped index fairly) with the largest index loaded, for 1 and 2 server processes.

Every phase is bounded by ``--requests`` and ``--seconds``. The load generator is this
process (one thread and one keep-alive connection per concurrent client; http.client costs
about a third of httpx's CPU per request, asyncio httpx more still) and shares the cores with
the server: each row gives both sides' CPU per request, and the server's own time per request
from its JSON request log. Hashing processes default to cores / server processes, so 1 and 2
server processes hash on as many processes as ``match_many(workers=2)``. ``--quick``: 100k
entries, 3 s phases (about 2 minutes). PASS/FAIL is informative: the exit status is always 0.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import http.client
import itertools
import json
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import numpy as np
from common import process_memory_mib  # bench/common.py

from hashmatch import EntryList, ListSource, Matcher, build_index, hash_image
from hashmatch.fixtures.hashlists import flip_bits, random_codes
from hashmatch.fixtures.service import ServeProcess, jpeg_bytes, serve_process, wait_until
from hashmatch.index.artifact import current_version, resolve_version

IMAGE_SIZE = (1155, 866)  # 1 megapixel
QUERIES = 1000  # half hits, half misses
RELOAD_ENTRIES = 20_000
CACHE_LAYOUT = 1  # bump when what a cached index holds changes
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Served:
    """An index to serve and what to ask it."""

    index: Path
    entries: int
    hits: list[str]
    misses: list[str]


def write_images(work: Path, count: int) -> tuple[list[Path], dict[str, str]]:
    """``count`` 1 MP JPEGs (cached) and the PDQ of the first half, the known ones, by path."""
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(1, count + 1):
        path = folder / f"photo{seed:02d}-{IMAGE_SIZE[0]}.jpg"
        if not path.is_file():
            path.write_bytes(jpeg_bytes(seed, IMAGE_SIZE, quality=88))
        paths.append(path)
    known = {str(p): hash_image(p, ["pdq"])["pdq"].hex for p in paths[: max(1, count // 2)]}
    return paths, known


def write_list(path: Path, codes: np.ndarray, known: dict[str, str]) -> None:
    with open(path, "w", encoding="ascii") as file:
        file.write("algorithm,hash,id\n")
        file.writelines(f"pdq,{pdq},known-{n}\n" for n, pdq in enumerate(known.values()))
        for start in range(0, len(codes), 100_000):
            block = codes[start : start + 100_000]
            file.writelines(f"pdq,{c.tobytes().hex()},r{start + j}\n" for j, c in enumerate(block))


def queries_for(codes: np.ndarray, seed: int) -> tuple[list[str], list[str]]:
    """Hits (stored codes with 1-8 bits flipped) and misses (fresh random codes)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(codes), size=QUERIES // 2, replace=False)
    hits = [flip_bits(codes[p], int(rng.integers(1, 9)), rng).tobytes().hex() for p in picks]
    misses = [code.tobytes().hex() for code in random_codes(QUERIES // 2, seed=seed + 1)]
    return hits, misses


def prepare_index(work: Path, entries: int, known: dict[str, str]) -> Served:
    """The ``entries``-code index under ``work``, built unless a matching one is cached."""
    folder = work / f"pdq-{entries}"
    meta_path = folder / "bench.json"
    wanted = {"layout": CACHE_LAYOUT, "entries": entries, "known": sorted(known.values())}
    if meta_path.is_file() and current_version(folder / "index") is not None:
        meta = json.loads(meta_path.read_text())
        if {key: meta.get(key) for key in wanted} == wanted:
            print(f"using the cached {entries:,}-entry index in {folder}", flush=True)
            return Served(folder / "index", entries, meta["hits"], meta["misses"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    codes = random_codes(entries, seed=entries)
    hits, misses = queries_for(codes, seed=entries + 7)
    write_list(folder / "list.csv", codes, known)
    del codes
    build_index([ListSource(folder / "list.csv", list_name="synthetic")], folder / "index")
    (folder / "list.csv").unlink()
    meta_path.write_text(json.dumps({**wanted, "hits": hits, "misses": misses}))
    print(f"built the {entries:,}-entry index in {time.perf_counter() - started:.0f}s", flush=True)
    return Served(folder / "index", entries, hits, misses)


# -- the load generator -------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request, and how to tell a right 200 answer from a wrong one."""

    method: str
    target: str
    body: bytes | None = None
    content_type: str | None = None
    right: Callable[[bytes], bool] = lambda body: True


class StdlibConnection:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def send(self, call: Call) -> tuple[int, bytes]:
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
    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def send(self, call: Call) -> tuple[int, bytes]:
        headers = {"content-type": call.content_type} if call.content_type else {}
        answer = self.client.request(call.method, call.target, content=call.body, headers=headers)
        return answer.status_code, answer.content

    def close(self) -> None:
        self.client.close()


CLIENTS = {"stdlib": StdlibConnection, "httpx": HttpxConnection}


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
        return float(np.percentile(self.latencies, q) * 1e3) if self.latencies else float("nan")

    def cpu_ms(self, seconds: float) -> float:
        return seconds * 1e3 / self.requests if self.requests else float("nan")


@dataclass(frozen=True)
class Bounds:
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
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the server ---------------------------------------------------------------------------


def process_tree(root: int) -> list[tuple[int, str]]:
    """``root`` (the supervisor) and its descendants, each with its role."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, level = [(root, "supervisor")], [root]
    for role in ("server process", "hashing process"):
        level = [child for pid in level for child in children.get(pid, [])]
        for pid in level:
            with contextlib.suppress(OSError):
                tracker = b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
                found.append((pid, "resource tracker" if tracker else role))
    return found


def process_pids(root: int) -> list[int]:
    return [pid for pid, _ in process_tree(root)]


class Server:
    """A running ``hashmatch serve``, once every server process serves the index."""

    def __init__(self, process: ServeProcess, workers: int) -> None:
        self.base_url, self.pid, self.log_path = (
            process.base_url,
            process.process.pid,
            process.log_path,
        )
        wait_until(
            f"{workers} server processes serving the index",
            lambda: process.log().count("serving index version") >= workers,
        )

    def pids(self) -> list[int]:
        return process_pids(self.pid)

    def logged(self, offset: int, route: str) -> list[tuple[int, float]]:
        """(server process, ms) of ``route``'s requests logged past ``offset``."""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        found = []
        for line in lines:
            _, _, message = line.partition("hashmatch.service.requests[")
            with contextlib.suppress(ValueError, KeyError):
                pid, message = message.split("]: ", 1)
                record = json.loads(message)
                if record["route"] == route:
                    found.append((int(pid), float(record["ms"])))
        return found

    def version(self) -> str:
        return str(httpx.get(self.base_url + "/v1/index", timeout=10).json()["version"])


def measured(
    server: Server, route: str, calls: list[Call], concurrency: int, bounds: Bounds, label: str
) -> Load:
    """A warm-up, then the phase, with the server's own time per request (its log) and the CPU
    per request on both sides."""
    warm = Bounds(bounds.requests, bounds.warmup, 0, bounds.client)
    generate_load(server.base_url, calls, concurrency, warm, label)
    processes = process_tree(server.pid)
    hashing = [pid for pid, role in processes if role == "hashing process"]
    everything = [pid for pid, _ in processes]
    offset, client = server.log_path.stat().st_size, own_cpu_seconds()
    busy, hashed = cpu_seconds(everything), cpu_seconds(hashing)
    load = generate_load(server.base_url, calls, concurrency, bounds, label)
    load.client_cpu_s = own_cpu_seconds() - client
    load.server_cpu_s = cpu_seconds(everything) - busy
    load.hashing_cpu_s = cpu_seconds(hashing) - hashed
    time.sleep(0.2)  # the last request lines
    logged = server.logged(offset, route)
    load.server_ms = [ms for _, ms in logged]
    load.per_process = sorted(Counter(pid for pid, _ in logged).values(), reverse=True)
    print(row(load), flush=True)
    return load


# -- what the routes are asked ------------------------------------------------------------


def found_in(body: bytes) -> list[bool]:
    """Per query, whether a raw_lookup or /v1/lookup answer found something."""
    answer = json.loads(body)
    if "results" in answer:
        return [bool(result["matches"]) for result in answer["results"]]
    return [bool(answer["matches"])]


def raw_lookup_calls(served: Served, stand_in: bool) -> list[Call]:
    calls = []
    for hit, miss in zip(served.hits, served.misses, strict=True):
        for code, expected in ((hit, [True]), (miss, [False])):
            right = lambda body, e=expected: found_in(body) == e  # noqa: E731
            if stand_in:
                body = json.dumps({"queries": [{"pdq": code}]}).encode()
                calls.append(Call("POST", "/v1/lookup", body, "application/json", right))
            else:
                target = "/m/raw_lookup?" + urlencode({"signal": code, "signal_type": "pdq"})
                calls.append(Call("GET", target, right=right))
    return calls


def lookup_batch_calls(served: Served, per_request: int = 100) -> list[Call]:
    calls, half = [], per_request // 2
    for start in range(0, len(served.hits) - half + 1, half):
        pairs = zip(
            served.hits[start : start + half], served.misses[start : start + half], strict=True
        )
        codes = [code for pair in pairs for code in pair]
        expected = [number % 2 == 0 for number in range(len(codes))]
        body = json.dumps({"queries": [{"pdq": code} for code in codes]}).encode()
        right = lambda body, e=expected: found_in(body) == e  # noqa: E731
        calls.append(Call("POST", "/v1/lookup", body, "application/json", right))
    return calls


def match_calls(paths: list[Path], known: dict[str, str], versions: set[str]) -> list[Call]:
    """/v1/match of each JPEG; the versions that answered are added to ``versions``."""

    def right(body: bytes, expected: str) -> bool:
        answer = json.loads(body)
        versions.add(answer["index_version"])
        return bool(answer["status"] == expected)

    return [
        Call(
            "POST",
            "/v1/match",
            path.read_bytes(),
            "image/jpeg",
            lambda body, e="match" if str(path) in known else "no_match": right(body, e),
        )
        for path in paths
    ]


def raw_lookup_missing(base_url: str, served: Served) -> bool:
    query = urlencode({"signal": served.hits[0], "signal_type": "pdq"})
    return httpx.get(f"{base_url}/m/raw_lookup?{query}", timeout=10).status_code == 404


def raw_lookup_route(stand_in: bool) -> tuple[str, str]:
    """The rows' label and the route template the request log names."""
    if stand_in:
        return "raw_lookup (404; POST /v1/lookup, 1 query, stands in)", "/v1/lookup"
    return "GET /m/raw_lookup", "/m/raw_lookup"


# -- the phases ---------------------------------------------------------------------------


def library_loads(
    served: Served, paths: list[Path], known: dict[str, str], bounds: Bounds
) -> tuple[Load, Load]:
    """``Matcher.lookup`` in a loop (one query; one core) and ``match_many(workers=2)``'s
    rate once its workers have started (latencies: the gaps between results)."""
    matcher = Matcher.open(served.index)
    queries = [query for pair in zip(served.hits, served.misses, strict=True) for query in pair]
    lookup = Load("Matcher.lookup, 1 query", 1)
    for warming in (True, False):
        started, cpu = time.perf_counter(), own_cpu_seconds()
        deadline = started + (bounds.warmup if warming else bounds.seconds)
        for number, query in enumerate(itertools.cycle(queries)):
            if number >= bounds.requests or time.perf_counter() > deadline:
                break
            call_started = time.perf_counter()
            found = matcher.lookup({"pdq": query}, dihedral=False)
            lookup.latencies.append(time.perf_counter() - call_started)
            lookup.wrong += bool(found) != (number % 2 == 0)
        if warming:
            lookup.latencies, lookup.wrong = [], 0
    lookup.seconds, lookup.requests = time.perf_counter() - started, len(lookup.latencies)
    lookup.server_cpu_s = own_cpu_seconds() - cpu
    print(row(lookup), flush=True)

    many = Load("Matcher.match_many(paths, workers=2)", 2)
    limit, deadline = max(4, bounds.requests // 10), time.perf_counter() + bounds.seconds + 3

    def sources() -> Iterator[Path]:
        for number, path in enumerate(itertools.cycle(paths)):
            if number >= limit or time.perf_counter() > deadline:
                return
            yield path

    finished, samples = [], []  # samples: (results, time, CPU of this process and its workers)
    for number, result in enumerate(matcher.match_many(sources(), workers=2), start=1):
        finished.append(time.perf_counter())
        many.wrong += result.status != ("match" if str(result.source) in known else "no_match")
        if number % 10 == 0:
            samples.append((number, finished[-1], cpu_seconds(process_pids(os.getpid()))))
    if len(samples) < 2:
        raise SystemExit("match_many gave under 20 results: raise --seconds or --requests")
    first = next(s for s in samples if s[0] >= len(finished) // 10)  # its workers started
    (done, end, busy), (skip, start, idle) = samples[-1], first
    many.requests, many.seconds, many.server_cpu_s = done - skip, end - start, busy - idle
    many.latencies = [b - a for a, b in itertools.pairwise(finished[skip - 1 : done])]
    print(row(many), flush=True)
    return lookup, many


def serve_loads(
    server: Server, served: Served, paths: list[Path], known: dict[str, str], bounds: Bounds
) -> tuple[list[Load], bool]:
    """Every phase against one server; and whether /v1/lookup stood in for raw_lookup."""
    stand_in = raw_lookup_missing(server.base_url, served)
    label, route = raw_lookup_route(stand_in)
    images = Bounds(max(4, bounds.requests // 10), bounds.seconds, bounds.warmup, bounds.client)
    plans = [
        (label, route, raw_lookup_calls(served, stand_in), 1, bounds),
        (label, route, raw_lookup_calls(served, stand_in), 16, bounds),
        ("POST /v1/lookup, 100 hashes", "/v1/lookup", lookup_batch_calls(served), 1, bounds),
        ("POST /v1/lookup, 100 hashes", "/v1/lookup", lookup_batch_calls(served), 16, bounds),
        ("POST /v1/match, 1 MP JPEG", "/v1/match", match_calls(paths, known, set()), 2, images),
        ("POST /v1/match, 1 MP JPEG", "/v1/match", match_calls(paths, known, set()), 4, images),
    ]
    loads = [measured(server, r, calls, c, b, name) for name, r, calls, c, b in plans]
    return loads, stand_in


def publish(index: Path, listing: Path, number: int) -> None:
    """One new version: the same list and one entry of its own (run in a child process, as a
    separate rebuild job would)."""
    extra = random_codes(1, seed=10_000 + number)[0].tobytes().hex()
    entries = EntryList([("pdq", extra, None, f"extra-{number}")], name="extra")
    build_index([ListSource(listing, list_name="synthetic"), entries], index)


@dataclass
class Reloads:
    loads: list[Load]
    first: str
    last: str
    published: list[str]
    seen_after: list[float]
    """Seconds from starting a build to every poll of /v1/index answering its version."""
    answering: int
    """Versions that answered /v1/match requests."""
    problems: list[str]

    @property
    def failures(self) -> int:
        return sum(load.errors + load.wrong for load in self.loads)

    @property
    def passed(self) -> bool:
        changed = bool(self.published) and self.first != self.last == self.published[-1]
        return self.failures == 0 and changed and not self.problems


def reload_phase(
    work: Path,
    workers: int,
    hash_workers: int,
    paths: list[Path],
    known: dict[str, str],
    bounds: Bounds,
    count: int,
) -> Reloads:
    """raw_lookup (concurrency 8) and /v1/match (concurrency 2) while ``count`` versions of a
    small index are published, one a second at most; SIGHUP after every other one, the rest
    found by the one-second reload check."""
    folder = work / "reload"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    codes = random_codes(RELOAD_ENTRIES, seed=3)
    served = Served(folder / "index", RELOAD_ENTRIES, *queries_for(codes, seed=4))
    write_list(folder / "list.csv", codes, known)
    publish(served.index, folder / "list.csv", 0)
    arguments = (
        "--workers",
        str(workers),
        "--hash-workers",
        str(hash_workers),
        "--reload-interval",
        "1",
    )
    published: list[str] = []
    seen_after: list[float] = []
    problems: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()
    with serve_process(served.index, *arguments, log_dir=folder) as process:
        server = Server(process, workers)
        first = server.version()

        def publisher() -> None:
            try:
                for number in range(1, count + 1):
                    started = time.monotonic()
                    command = [sys.executable, __file__, "--publish", str(served.index)]
                    subprocess.run(
                        [*command, str(folder / "list.csv"), str(number)],
                        check=True,
                        capture_output=True,
                    )
                    published.append(str(current_version(served.index)))
                    if number % 2:
                        os.kill(server.pid, signal.SIGHUP)
                    polls, deadline = 0, time.monotonic() + 10
                    while polls < 4 * workers and time.monotonic() < deadline:  # every process
                        polls = polls + 1 if server.version() == published[-1] else 0
                        time.sleep(0.02)
                    if polls < 4 * workers:
                        problems.append(f"version {published[-1]} not served within 10 s")
                    seen_after.append(time.monotonic() - started)
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
            except Exception as exc:  # reported with the phase
                problems.append(f"publishing: {type(exc).__name__}: {exc}")
            finally:
                time.sleep(1.0)
                stop.set()

        stand_in = raw_lookup_missing(server.base_url, served)
        label, _ = raw_lookup_route(stand_in)
        long = Bounds(10**9, 30.0 * count, 0, bounds.client)  # ``stop`` ends them
        plans = [
            (raw_lookup_calls(served, stand_in), 8, label),
            (match_calls(paths, known, versions), 2, "POST /v1/match, 1 MP JPEG"),
        ]
        loads: list[Load] = []

        def run_load(calls: list[Call], concurrency: int, label: str) -> None:
            during = label + ", during reloads"
            loads.append(generate_load(server.base_url, calls, concurrency, long, during, stop))

        threads = [threading.Thread(target=run_load, args=plan) for plan in plans]
        threads.append(threading.Thread(target=publisher))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(long.seconds + 120)
        last = server.version()
    for load in loads:
        print(row(load), flush=True)
    return Reloads(loads, first, last, published, seen_after, len(versions), problems)


# -- output -------------------------------------------------------------------------------


def row(load: Load) -> str:
    return (
        f"{load.label:52} c={load.concurrency:<2} {load.requests:>7} in {load.seconds:5.1f}s"
        f" {load.rate:8.1f}/s p50 {load.ms(50):7.2f}ms p99 {load.ms(99):7.2f}ms"
        f" errors {load.errors} wrong {load.wrong}"
        + (f"  first problem: {load.problem}" if load.problem else "")
    )


def number(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


@dataclass
class Run:
    """Everything measured, for the tables."""

    hash_workers: dict[int, int]
    loads: list[tuple[int, int, Load]] = field(default_factory=list)  # entries, workers, load
    library: dict[int, tuple[Load, Load]] = field(default_factory=dict)  # lookup, match_many
    memory: dict[int, list[tuple[int, str, float, float]]] = field(default_factory=dict)
    reloads: dict[int, Reloads] = field(default_factory=dict)
    stand_in: bool = False

    def shape(self, workers: int) -> str:
        return f"{workers} x {self.hash_workers[workers]}"

    def find(self, entries: int, workers: int, route: str, concurrency: int) -> Load | None:
        for e, w, load in self.loads:
            if (e, w, load.concurrency) == (entries, workers, concurrency) and route in load.label:
                return load
        return None


def print_loads(run: Run, client: str) -> None:
    print(
        f"\nThis machine's {os.cpu_count()} cores run the server and this load generator (one"
        f" thread and one keep-alive {client} connection per concurrent client) together: CPU"
        " ms/request of each side are columns (the server's: all its processes, the hashing"
        " ones also apart). Processes: server processes x hashing"
        " processes each. Latency percentiles over each phase's requests; server log ms: the"
        " median of the server's own request-log times."
    )
    header = "entries,route,processes,concurrency,requests,requests/s,p50 ms,p99 ms,errors"
    header += ",wrong,server log ms,requests by process,server CPU ms/req,of which hashing"
    header += ",client CPU ms/req"
    rows = []
    for entries, workers, load in run.loads:
        total = sum(load.per_process)
        shares = " / ".join(f"{n / total:.0%}" for n in load.per_process) if total else "-"
        server_ms = statistics.median(load.server_ms) if load.server_ms else float("nan")
        rows.append(
            [
                *(f"{entries:,}", load.label, run.shape(workers), str(load.concurrency)),
                *(f"{load.requests:,}", number(load.rate, 1), number(load.ms(50))),
                *(number(load.ms(99)), str(load.errors), str(load.wrong), number(server_ms)),
                *(shares, number(load.cpu_ms(load.server_cpu_s))),
                number(load.cpu_ms(load.hashing_cpu_s)),
                number(load.cpu_ms(load.client_cpu_s)),
            ]
        )
    table(header.split(","), rows)
    rows = []
    for entries, pair in run.library.items():
        for load in pair:
            rows.append([f"{entries:,}", load.label, number(load.rate, 1)])
            rows[-1] += [number(load.ms(50), 3), number(load.ms(99), 3), str(load.wrong)]
            rows[-1].append(number(load.cpu_ms(load.server_cpu_s), 3))
    table(
        [
            "entries",
            "library, in this process",
            "calls or images/s",
            "p50 ms",
            "p99 ms",
            "wrong",
            "CPU ms/call",
        ],
        rows,
    )
    rows = []
    for entries, workers in sorted({(e, w) for e, w, _ in run.loads}):
        lookup, many = run.library[entries]
        cells = [(run.find(entries, workers, "raw_lookup", c), lookup) for c in (1, 16)]
        cells += [(run.find(entries, workers, "/v1/match", c), many) for c in (2, 4)]
        ratios = ["-" if load is None else f"{load.rate / base.rate:.2f}x" for load, base in cells]
        rows.append([f"{entries:,}", run.shape(workers), *ratios])
    header = "entries,processes,raw_lookup c=1 / Matcher.lookup,raw_lookup c=16 / Matcher.lookup"
    table([*header.split(","), "/v1/match c=2 / match_many", "/v1/match c=4 / match_many"], rows)


def print_memory(run: Run, entries: int, disk_mib: float) -> None:
    print(
        f"\nMemory (MiB), {entries:,}-entry index ({disk_mib:.0f} MiB on disk), after its phases:"
    )
    rows, totals = [], {}
    for workers, processes in sorted(run.memory.items()):
        roles: dict[str, list[tuple[float, float]]] = {}
        for _, role, rss, pss in processes:
            roles.setdefault(role, []).append((rss, pss))
        for role, values in roles.items():
            each = [" / ".join(f"{v[i]:.0f}" for v in values) for i in (0, 1)]
            sums = [f"{sum(v[i] for v in values):.0f}" for i in (0, 1)]
            rows.append([run.shape(workers), role, str(len(values)), *each, *sums])
        totals[workers] = [sum(p[i] for p in processes) for i in (2, 3)]
        rows.append([run.shape(workers), "all", str(len(processes)), "", ""])
        rows[-1] += [f"{total:.0f}" for total in totals[workers]]
    table(["processes", "role", "count", "VmRSS each", "Pss each", "VmRSS sum", "Pss sum"], rows)
    if 1 in totals and 2 in totals:
        rss, pss = (totals[2][i] - totals[1][i] for i in (0, 1))
        print(
            f"\nOne more server process: {rss:+.0f} MiB summed VmRSS, {pss:+.0f} MiB summed Pss"
            " (as many hashing processes both times; VmRSS counts the shared, memory-mapped"
            " index pages in every process that touched them, Pss splits them)."
        )


def print_reloads(run: Run) -> None:
    rows = []
    for workers, result in sorted(run.reloads.items()):
        for load in result.loads:
            rows.append([f"{RELOAD_ENTRIES:,}", load.label, run.shape(workers)])
            rows[-1] += [str(load.concurrency), f"{load.requests:,}", number(load.rate, 1)]
            rows[-1] += [number(load.ms(50)), number(load.ms(99)), str(load.errors)]
            rows[-1].append(str(load.wrong))
    header = "entries,route,processes,concurrency,requests,requests/s,p50 ms,p99 ms,errors,wrong"
    table(header.split(","), rows)
    for workers, result in sorted(run.reloads.items()):
        seen = result.seen_after or [float("nan")]
        print(
            f"\nReloads, {run.shape(workers)}: {len(result.published)} versions published under"
            f" load; /v1/index said {result.first} before, {result.last} after; each new version"
            f" answered every /v1/index poll {number(statistics.median(seen))} s (median;"
            f" {number(max(seen))} s max) after its build started; {result.answering} versions"
            f" answered /v1/match; errors + wrong answers: {result.failures}"
        )
        for problem in result.problems:
            print(f"  problem: {problem}")


def print_targets(run: Run, entries: int) -> None:
    note = "" if entries >= 10_000_000 else f" (at {entries:,}; the target is for 10M)"
    note += " (/v1/lookup, 1 query, stood in)" if run.stand_in else ""
    rows: list[list[str]] = []

    def target(what: str, measured: str, passed: bool) -> None:
        rows.append([what, measured, "PASS" if passed else "FAIL"])

    for workers in sorted(run.hash_workers):
        shape = f"{workers} server process{'es' if workers > 1 else ''}"
        raw = run.find(entries, workers, "raw_lookup", 16)
        if raw is not None:
            rate, p99 = raw.rate, raw.ms(99)
            target(f"raw_lookup c=16, {shape}: >= 2,000/s{note}", f"{rate:,.0f}/s", rate >= 2000)
            target(f"raw_lookup c=16, {shape}: p99 <= 10 ms{note}", f"{p99:.2f} ms", p99 <= 10)
        many = run.library[entries][1].rate
        found = (run.find(entries, workers, "/v1/match", c) for c in (2, 4))
        best = max((load.rate for load in found if load is not None), default=0.0)
        measured = f"{best / many:.2f}x ({best:.1f} / {many:.1f} images/s)"
        target(f"/v1/match (c=2 or 4), {shape}: >= 0.8x match_many", measured, best >= 0.8 * many)
        if workers in run.reloads:
            reloads = run.reloads[workers]
            measured = f"{reloads.failures} errors, {reloads.first[-6:]} -> {reloads.last[-6:]}"
            what = f"{len(reloads.published)} reloads under load, {shape}: no errors, new version"
            target(what, measured, reloads.passed)
    table(["target", "measured", "result"], rows)


# -- main ---------------------------------------------------------------------------------


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="python bench/serve.py [options]",
    )
    add = parser.add_argument
    add("--sizes", default="1000000,10000000", help="index entries, comma-separated [%(default)s]")
    add("--quick", action="store_true", help="100k entries, 3 s phases (about 2 minutes)")
    default_work = Path(tempfile.gettempdir()) / "hashmatch-bench-serve"
    add(
        "--work",
        type=Path,
        default=default_work,
        help="indexes and images, kept for re-runs [%(default)s]",
    )
    add("--seconds", type=float, default=10.0, help="bound on each phase [%(default)s]")
    add(
        "--requests",
        type=int,
        default=50_000,
        help="bound on each phase's requests (/v1/match: a tenth) [%(default)s]",
    )
    add("--warmup", type=float, default=1.0, help="seconds of load before each phase [%(default)s]")
    add("--workers", default="1,2", help="server process counts to run [%(default)s]")
    add(
        "--hash-workers",
        type=int,
        default=0,
        help="hashing processes per server process [cores / server processes]",
    )
    add(
        "--images",
        type=int,
        default=4,
        help="distinct 1 MP JPEGs, half of them known [%(default)s]",
    )
    add("--reloads", type=int, default=10, help="versions published under load [%(default)s]")
    add(
        "--client",
        choices=sorted(CLIENTS),
        default="stdlib",
        help="http.client or httpx connections [%(default)s]",
    )
    add("--publish", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seconds, args.warmup = (
            "100000",
            min(args.seconds, 3.0),
            min(args.warmup, 0.5),
        )
    return args


def main() -> None:
    args = parse_arguments()
    if args.publish:
        index, listing, version = args.publish
        publish(Path(index), Path(listing), int(version))
        return
    sizes = sorted(int(size) for size in args.sizes.split(",") if size)
    cores = os.cpu_count() or 1
    run = Run(
        {int(w): args.hash_workers or max(1, cores // int(w)) for w in args.workers.split(",") if w}
    )
    bounds = Bounds(args.requests, args.seconds, args.warmup, args.client)
    started = time.perf_counter()
    paths, known = write_images(args.work, args.images)
    for entries in sizes:
        served = prepare_index(args.work, entries, known)
        run.library[entries] = library_loads(served, paths, known, bounds)
        for workers, hashing in run.hash_workers.items():
            print(
                f"-- {entries:,} entries, {workers} server process(es) x {hashing} hashing",
                flush=True,
            )
            arguments = ("--workers", str(workers), "--hash-workers", str(hashing))
            with serve_process(served.index, *arguments, log_dir=args.work) as process:
                server = Server(process, workers)
                loads, stand_in = serve_loads(server, served, paths, known, bounds)
                run.loads += [(entries, workers, load) for load in loads]
                run.stand_in = run.stand_in or stand_in
                if entries == sizes[-1]:
                    run.memory[workers] = [
                        (pid, role, *process_memory_mib(pid))
                        for pid, role in process_tree(server.pid)
                    ]
    for workers, hashing in run.hash_workers.items():
        print(f"-- {args.reloads} reloads under load, {workers} server process(es)", flush=True)
        run.reloads[workers] = reload_phase(
            args.work, workers, hashing, paths, known, bounds, args.reloads
        )
    version = resolve_version(args.work / f"pdq-{sizes[-1]}" / "index")
    disk_mib = sum(p.stat().st_size for p in version.iterdir()) / 2**20
    print(f"\nall phases in {time.perf_counter() - started:.0f}s")
    print_loads(run, args.client)
    print_memory(run, sizes[-1], disk_mib)
    print_reloads(run)
    print_targets(run, sizes[-1])


if __name__ == "__main__":
    main()
