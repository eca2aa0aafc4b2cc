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
  memory-mapped index fairly) with the largest index loaded, for 1 and 2 server processes;
* live banks (``serve_banks.py``) on the largest index: add -> matchable on the writing and a
  second instance, raw_lookup beside an overlay of 0, 1,000 and 100,000 added hashes, adds/s
  (``--banks-only``: just these).

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

# this module runs the phases; beside it, run as a script so its folder is on sys.path:
# load.py (the load generator), serve_calls.py (what the routes are asked), serve_setup.py
# (indexes, servers, new versions) and serve_report.py (the lines and tables)
import argparse
import itertools
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from load import CLIENTS, Bounds, Call, Load, cpu_seconds, generate_load, own_cpu_seconds
from serve_banks import bank_phases, print_banks
from serve_calls import (
    lookup_batch_calls,
    match_calls,
    raw_lookup_calls,
    raw_lookup_missing,
    raw_lookup_route,
)
from serve_report import (
    Reloads,
    Run,
    print_loads,
    print_memory,
    print_reloads,
    print_targets,
    row,
)
from serve_setup import (
    Publishing,
    Served,
    Server,
    prepare_index,
    prepare_reload_index,
    process_pids,
    process_tree,
    publish_versions,
    tree_memory_mib,
    write_images,
)

from hashmatch import Matcher
from hashmatch.fixtures.service import serve_process
from hashmatch.index.artifact import resolve_version

# -- the phases ---------------------------------------------------------------------------


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
    served, listing = prepare_reload_index(work / "reload", known)
    arguments = (
        "--workers",
        str(workers),
        "--hash-workers",
        str(hash_workers),
        "--reload-interval",
        "1",
    )
    publishing = Publishing()
    versions: set[str] = set()
    stop = threading.Event()
    with serve_process(served.index, *arguments, log_dir=listing.parent) as process:
        server = Server(process, workers)
        first = server.version()
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
        publisher = (server, served.index, listing, count, stop, publishing)
        threads.append(threading.Thread(target=publish_versions, args=publisher))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(long.seconds + 120)
        last = server.version()
    for load in loads:
        print(row(load), flush=True)
    return Reloads(
        loads,
        first,
        last,
        publishing.published,
        publishing.seen_after,
        len(versions),
        publishing.problems,
    )


# -- main ---------------------------------------------------------------------------------


def parse_arguments() -> argparse.Namespace:
    """The options; ``--quick`` overrides the sizes and shortens the phases."""
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
    add("--banks-only", action="store_true", help="only the live banks' phases")
    add("--bank-adds", type=int, default=300, help="adds timed to matchable [%(default)s]")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seconds, args.warmup = (
            "100000",
            min(args.seconds, 3.0),
            min(args.warmup, 0.5),
        )
    return args


def main() -> None:
    """The library, then every server-process count at every size, then the reloads; the
    tables last, so the phases' lines show progress and the tables read as one report."""
    args = parse_arguments()
    sizes = sorted(int(size) for size in args.sizes.split(",") if size)
    cores = os.cpu_count() or 1
    run = Run(
        {int(w): args.hash_workers or max(1, cores // int(w)) for w in args.workers.split(",") if w}
    )
    bounds = Bounds(args.requests, args.seconds, args.warmup, args.client)
    started = time.perf_counter()
    paths, known = write_images(args.work, args.images)
    if args.banks_only:
        banks = bank_phases(
            prepare_index(args.work, sizes[-1], known), args.work, bounds, args.bank_adds
        )
        print(f"\nall phases in {time.perf_counter() - started:.0f}s")
        print_banks(banks)
        return
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
                    run.memory[workers] = tree_memory_mib(server.pid)
    for workers, hashing in run.hash_workers.items():
        print(f"-- {args.reloads} reloads under load, {workers} server process(es)", flush=True)
        run.reloads[workers] = reload_phase(
            args.work, workers, hashing, paths, known, bounds, args.reloads
        )
    banks = bank_phases(
        prepare_index(args.work, sizes[-1], known), args.work, bounds, args.bank_adds
    )
    version = resolve_version(args.work / f"pdq-{sizes[-1]}" / "index")
    disk_mib = sum(p.stat().st_size for p in version.iterdir()) / 2**20
    print(f"\nall phases in {time.perf_counter() - started:.0f}s")
    print_loads(run, args.client)
    print_memory(run, sizes[-1], disk_mib)
    print_reloads(run)
    print_targets(run, sizes[-1])
    print_banks(banks)


if __name__ == "__main__":
    main()
