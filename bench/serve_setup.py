"""What ``bench/serve.py`` measures on: its indexes, its servers, and new versions to publish.

Indexes of millions of random codes take minutes to build, so they are cached under the
work folder and rebuilt only when what they hold changes (:data:`CACHE_LAYOUT`, the sizes,
the known images). A server counts as started only once every server process logs that it
serves the index: each listens on its own ``SO_REUSEPORT`` socket (bound before it loads the
index), and a process not yet listening would receive no connection, so measuring sooner
would measure fewer processes than asked for. New versions under load are built in a child
process (``python bench/serve_setup.py --publish INDEX LIST NUMBER``), as a separate rebuild
job would, so the build does not share the benchmark's interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from common import process_memory_mib  # bench/common.py

from hashmatch import EntryList, ListSource, build_index, hash_image
from hashmatch.fixtures.hashlists import flip_bits, random_codes
from hashmatch.fixtures.service import ServeProcess, jpeg_bytes, wait_until
from hashmatch.index.artifact import current_version

IMAGE_SIZE = (1155, 866)  # 1 megapixel
QUERIES = 1000  # half hits, half misses
RELOAD_ENTRIES = 20_000
CACHE_LAYOUT = 1  # bump when what a cached index holds changes


@dataclass(frozen=True)
class Served:
    """An index to serve and what to ask it."""

    index: Path
    entries: int
    hits: list[str]
    misses: list[str]


# -- images and indexes -------------------------------------------------------------------


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
    """A hash list of the known images' PDQ, then ``codes``; written in blocks, since 10M
    codes as one string would take gigabytes."""
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


def prepare_reload_index(folder: Path, known: dict[str, str]) -> tuple[Served, Path]:
    """A fresh small index in ``folder`` (its first version published) and the hash list
    every later version is built from; never cached, since the phase publishes into it."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    codes = random_codes(RELOAD_ENTRIES, seed=3)
    served = Served(folder / "index", RELOAD_ENTRIES, *queries_for(codes, seed=4))
    write_list(folder / "list.csv", codes, known)
    publish(served.index, folder / "list.csv", 0)
    return served, folder / "list.csv"


# -- servers ------------------------------------------------------------------------------


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
    """``root`` and its children and grandchildren, whatever their roles."""
    return [pid for pid, _ in process_tree(root)]


def tree_memory_mib(root: int) -> list[tuple[int, str, float, float]]:
    """(pid, role, VmRSS, Pss) in MiB of ``root`` and its descendants."""
    return [(pid, role, *process_memory_mib(pid)) for pid, role in process_tree(root)]


class Server:
    """A running ``hashmatch serve``, once every server process serves the index."""

    def __init__(self, process: ServeProcess, workers: int) -> None:
        self.base_url, self.pid, self.log_path = (
            process.base_url,
            process.process.pid,
            process.log_path,
        )
        self.workers = workers
        # a server process listens before it loads the index, so once each has logged the
        # version it serves, each is in the port's SO_REUSEPORT group and gets connections
        wait_until(
            f"{workers} server processes serving the index",
            lambda: process.log().count("serving index version") >= workers,
        )

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


# -- new versions under load --------------------------------------------------------------


def publish(index: Path, listing: Path, number: int) -> None:
    """One new version: the same list and one entry of its own (run in a child process, as a
    separate rebuild job would)."""
    extra = random_codes(1, seed=10_000 + number)[0].tobytes().hex()
    entries = EntryList([("pdq", extra, None, f"extra-{number}")], name="extra")
    build_index([ListSource(listing, list_name="synthetic"), entries], index)


@dataclass
class Publishing:
    """What publishing versions under load saw, for the reload phase's report."""

    published: list[str] = field(default_factory=list)
    seen_after: list[float] = field(default_factory=list)
    """Seconds from starting a build to every poll of /v1/index answering its version."""
    problems: list[str] = field(default_factory=list)


def publish_versions(
    server: Server,
    index: Path,
    listing: Path,
    count: int,
    stop: threading.Event,
    publishing: Publishing,
) -> None:
    """Publish ``count`` versions of ``index``, one a second at most, SIGHUP after every other
    one (the rest are for the server's own reload check to find), each waited for until
    ``4 x server processes`` polls in a row answer it; then, a second later, set ``stop``.
    Failures become ``publishing.problems``, never exceptions: the load is still running."""
    try:
        for number in range(1, count + 1):
            started = time.monotonic()
            command = [sys.executable, __file__, "--publish", str(index)]
            subprocess.run(
                [*command, str(listing), str(number)],
                check=True,
                capture_output=True,
            )
            publishing.published.append(str(current_version(index)))
            if number % 2:
                os.kill(server.pid, signal.SIGHUP)
            polls, deadline = 0, time.monotonic() + 10
            while polls < 4 * server.workers and time.monotonic() < deadline:  # every process
                polls = polls + 1 if server.version() == publishing.published[-1] else 0
                time.sleep(0.02)
            if polls < 4 * server.workers:
                publishing.problems.append(
                    f"version {publishing.published[-1]} not served within 10 s"
                )
            publishing.seen_after.append(time.monotonic() - started)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    except Exception as exc:  # reported with the phase
        publishing.problems.append(f"publishing: {type(exc).__name__}: {exc}")
    finally:
        time.sleep(1.0)
        stop.set()


def main() -> None:
    """The child process :func:`publish_versions` runs: ``--publish INDEX LIST NUMBER``."""
    if len(sys.argv) != 5 or sys.argv[1] != "--publish":
        raise SystemExit(f"usage: python {sys.argv[0]} --publish INDEX LIST NUMBER")
    publish(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))


if __name__ == "__main__":
    main()
