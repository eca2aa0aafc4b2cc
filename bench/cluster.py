"""Cluster scanning benchmark: ``hashmatch scan --engine ray`` against the local scan, 2 CPUs each.

    python bench/cluster.py [--entries 1000000] [--photos 42] [--copies 24] [--repeats 3] [--quick]

On one folder of 3,024 JPEGs (42 photos at 1, 4 and 12 MP, each hard-linked 24 times:
bench/scan.py's ``prepare`` and ``replicate``) and a PDQ index of ``--entries`` random hashes
plus four of the photos' (so some files match), both cached under /tmp/hashmatch-bench-cluster,
measures in one run:

* the local scan: ``hashmatch scan FOLDER -r --index IDX -j 2 --format jsonl -o OUT -q``;
* the same with ``--engine ray --ray-address 127.0.0.1:PORT`` on a one-node Ray started for it
  (``ray start --head --num-cpus 2 --block``);
* the same on a two-node Ray on this machine: a head with ``--num-cpus 1`` and a worker node
  joined to it (``ray start --address 127.0.0.1:PORT --num-cpus 1 --block``).

Each contender's whole command is timed as a user runs it, its start-up as the same command on a
one-file folder, and once started = (files - 1) / (whole - start-up). 3,024 files (not 1,008)
keep that ratio clear of the start-up's noise (a second or two for Ray). Record timestamps cannot
give the rate: a Ray scan writes its records a block (about 130 files here) at a time, so the
time of the first record is shown, not used. A Ray cluster is up only for its contender:
started (every node's CPUs registered before timing), given an untimed one-file scan (as the
local scan is), measured, and stopped (SIGTERM to each ``ray start``, then SIGKILL to what is
left of its process group), so an idle cluster takes no CPU from another contender.
``--repeats`` rounds interleave the contenders; medians are quoted.

Per-node files of the two-node run: records do not say where a file was hashed, so once, after
the timed runs, the same scan runs through the library in a driver process (``list_sources``,
``pin_index``, ``records_dataset``, as the command does) that counts each output block's rows
under the node Ray Data recorded as building it (the block metadata's ``exec_stats.node_id``,
taken in the actor that made the block). A following ``map_batches`` stage reporting its own
node would not do: Ray Data does not fuse a task stage onto an actor stage, and spreads tasks
over the nodes.

Every run's records must hold the same (path, status) pairs, each path once; the script stops
if they do not. Ray runs with ``RAY_AUTH_MODE=disabled`` unless that is set: a head turns token
authentication on when ~/.ray/auth_token exists, and neither a node joining by address nor a
driver given an address then authenticates.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # see the docstring

import argparse
import contextlib
import json
import logging
import math
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from scan import prepare, replicate  # bench/scan.py

CACHE = Path("/tmp/hashmatch-bench-cluster")
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray") or "ray"
READY_SECONDS = 120.0
STOP_SECONDS = 15.0
HEAD_RESOURCE = "node:__internal_head__"
NODE_ENVIRONMENT = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
"""A node's: no draining on SIGTERM (a head with Ray Data's detached actors on it otherwise
waits the whole 30 s before stopping)."""


@dataclass(frozen=True)
class Workspace:
    index: Path
    folder: Path
    single: Path
    """A folder of one file: the scan's start-up."""
    logs: Path

    @property
    def files(self) -> int:
        return len(list(self.folder.iterdir()))


@dataclass(frozen=True)
class Contender:
    name: str
    nodes: tuple[int, ...] = ()
    """CPUs of each Ray node, the head first; none: the local scan."""


CONTENDERS = (
    Contender("hashmatch scan -j 2 (local)"),
    Contender("--engine ray, 1 node x 2 CPUs", (2,)),
    Contender("--engine ray, 2 nodes x 1 CPU", (1, 1)),
)


@dataclass
class Timings:
    """A contender's seconds, one per round."""

    whole: list[float] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)
    first_record: list[float] = field(default_factory=list)
    cluster_up: list[float] = field(default_factory=list)
    """From ``ray start`` to every node's CPUs registered (not in the command's time)."""


@dataclass(frozen=True)
class Summary:
    """A contender's medians, and its rates over ``files``."""

    name: str
    files: int
    whole: float
    startup: float
    first_record: float
    cluster_up: float | None

    @property
    def once_started(self) -> float:
        """Files/s past start-up; nan when start-up took as long as the whole run (too few
        files for the noise)."""
        rest = self.whole - self.startup
        return (self.files - 1) / rest if rest > 0 else float("nan")

    @property
    def whole_rate(self) -> float:
        return self.files / self.whole


def workspace(entries: int, photos: int, copies: int) -> Workspace:
    """The index and folders for these sizes, made once and kept under CACHE."""
    root = CACHE / f"{photos}-photos-{entries}-entries"
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    found = Workspace(root / "index", root / f"{copies}-copies", root / "one-file", logs)
    if not (root / "ready").exists():
        started = time.perf_counter()
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _, uploads, paths = prepare(root, entries, photos)
        found.single.mkdir()
        os.link(min(uploads.iterdir()), found.single / "only.jpg")
        (root / "ready").touch()
        print(
            f"prepared {len(paths)} JPEGs (1, 4, 12 MP) and a {entries:,}-entry index in"
            f" {time.perf_counter() - started:.0f}s under {root}",
            flush=True,
        )
    ready = root / f"{copies}-copies.ready"  # beside the folder, not in it
    if not ready.exists():
        shutil.rmtree(found.folder, ignore_errors=True)
        shutil.rmtree(root / "scan-folder", ignore_errors=True)
        replicate(root / "uploads", copies).rename(found.folder)
        ready.touch()
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node_command(cpus: int, head_port: int, head: bool) -> list[str]:
    """``ray start --block`` for one node, every port of its own free (two nodes share a host)."""
    ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port"]
    ports += ["--runtime-env-agent-port", "--metrics-export-port"]
    command = [RAY, "start", "--num-cpus", str(cpus), "--node-ip-address", "127.0.0.1"]
    if head:
        command += ["--head", "--port", str(head_port), "--include-dashboard", "false"]
        ports.append("--dashboard-port")
    else:
        command += ["--address", f"127.0.0.1:{head_port}"]
    for flag in ports:
        command += [flag, str(free_port())]
    return [*command, "--disable-usage-stats", "--block"]


def process_table() -> dict[int, tuple[int, str]]:
    """Every process's parent and start time, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int) -> dict[int, str]:
    """The processes under ``root`` now, with their start times. Ray's workers and actors
    lead process groups of their own, so killing a node's group can miss them."""
    table = process_table()
    found: dict[int, str] = {}
    parents = [root]
    while parents:
        parent = parents.pop()
        for pid, (ppid, started) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                parents.append(pid)
    return found


def stop_node(process: subprocess.Popen[bytes]) -> None:
    """Ends a node: SIGTERM to ``ray start``, which stops its processes (a SIGTERM to the
    whole group instead leaves it hanging), then SIGKILL to whatever is left of its process
    group and of the processes it had started (same pid and start time), also when
    interrupted while waiting."""
    family = descendants(process.pid)
    try:
        process.terminate()
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        table = process_table()
        for pid, started in family.items():
            if table.get(pid, (0, ""))[1] == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def ray_cluster(nodes: tuple[int, ...], logs: Path) -> Iterator[str | None]:
    """The address of a Ray cluster of these nodes started on this machine (None for none),
    every node stopped on leaving (the worker first), exceptions and interrupts included."""
    if not nodes:
        yield None
        return
    port = free_port()
    address = f"127.0.0.1:{port}"
    started: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stopping:
        for number, cpus in enumerate(nodes):
            with open(logs / f"node{number}.log", "wb") as log:
                process = subprocess.Popen(
                    node_command(cpus, port, head=number == 0),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=NODE_ENVIRONMENT,
                )
            stopping.callback(stop_node, process)  # each runs, whatever the others raise
            started.append(process)
        wait_ready(address, nodes, started, logs)
        yield address


def wait_ready(
    address: str, nodes: tuple[int, ...], started: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    """Returns once every node is up with its CPUs (checked by a driver process)."""
    check = [sys.executable, __file__, "--ray-ready", address, str(len(nodes)), str(sum(nodes))]
    try:  # run() kills the check on any exception, interrupts included
        done = subprocess.run(check, capture_output=True, text=True, timeout=READY_SECONDS)
        error = done.stderr if done.returncode != 0 else ""
    except subprocess.TimeoutExpired:
        error = "timed out"
    if error or any(process.poll() is not None for process in started):
        tail = (logs / "node0.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Ray at {address} did not start: {error[-2000:]}\n{tail}")


def ray_ready(address: str, nodes: int, cpus: int) -> None:
    """(In a child process.) Waits until the cluster has ``nodes`` alive nodes and ``cpus``."""
    import ray

    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            break
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    while time.monotonic() < deadline:
        alive = [n for n in ray.nodes() if n["Alive"]]
        if len(alive) == nodes and sum(n["Resources"].get("CPU", 0) for n in alive) == cpus:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{address}: {len(alive)} of {nodes} nodes up")


def scan_command(space: Workspace, folder: Path, output: Path, address: str | None) -> list[str]:
    command = [sys.executable, "-m", "hashmatch.cli", "scan", str(folder), "-r"]
    command += ["--index", str(space.index), "-j", "2", "--format", "jsonl", "-o", str(output)]
    command.append("-q")
    if address is not None:
        command += ["--engine", "ray", "--ray-address", address]
    return command


def timed_scan(space: Workspace, folder: Path, address: str | None) -> tuple[float, float, Path]:
    """Seconds of the whole command, seconds to its first record, and its output."""
    output = space.logs / "records.jsonl"
    output.unlink(missing_ok=True)
    errors = space.logs / "scan-stderr.log"
    first: float | None = None
    with open(errors, "wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            scan_command(space, folder, output, address),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            while process.poll() is None:
                if first is None and output.exists() and output.stat().st_size > 0:
                    first = time.perf_counter() - started
                time.sleep(0.02)
            whole = time.perf_counter() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if process.returncode not in (0, 1):  # 1: something matched
        raise RuntimeError(f"scan failed ({process.returncode}): {errors.read_text()[-3000:]}")
    return whole, whole if first is None else first, output


def path_statuses(output: Path, files: int) -> frozenset[tuple[str, str]]:
    """The (path, status) pairs of a run's records, checked to name every file once."""
    with open(output, encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    pairs = frozenset((r["path"], r["status"]) for r in records)
    paths = {path for path, _ in pairs}
    if len(records) != files or len(paths) != files:
        raise AssertionError(f"{output}: {len(records)} records, {len(paths)} paths, {files} files")
    return pairs


def measure(
    space: Workspace, contender: Contender, timings: Timings, node_counts: bool
) -> tuple[frozenset[tuple[str, str]], dict[str, int]]:
    """One round of a contender on its own cluster: the whole folder, then one file."""
    per_node: dict[str, int] = {}
    begun = time.perf_counter()
    with ray_cluster(contender.nodes, space.logs) as address:
        if address is not None:
            timings.cluster_up.append(time.perf_counter() - begun)
        timed_scan(space, space.single, address)  # untimed: a first job on a new cluster
        whole, first, output = timed_scan(space, space.folder, address)
        pairs = path_statuses(output, space.files)
        startup, _, _ = timed_scan(space, space.single, address)
        if node_counts and address is not None:
            per_node = count_per_node(space, address, pairs)
    timings.whole.append(whole)
    timings.first_record.append(first)
    timings.startup.append(startup)
    print(
        f"  {contender.name}: whole {whole:.1f}s, start-up {startup:.1f}s,"
        f" first record {first:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    return pairs, per_node


def count_per_node(
    space: Workspace, address: str, pairs: frozenset[tuple[str, str]]
) -> dict[str, int]:
    """Files each node hashed, from a library run of the same scan in a driver process."""
    output = space.logs / "driver-records.jsonl"
    driver = [sys.executable, __file__, "--node-counts", address, str(space.folder)]
    driver += [str(space.index), str(output)]
    with open(space.logs / "driver.log", "wb") as log:
        done = subprocess.run(driver, check=False, stdout=subprocess.PIPE, stderr=log, text=True)
    if done.returncode != 0:
        tail = (space.logs / "driver.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the library driver failed ({done.returncode}): {tail}")
    if path_statuses(output, space.files) != pairs:
        raise AssertionError("the library run's records differ from the command's")
    counts: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


def node_counts(address: str, folder: str, index: str, output: str) -> None:
    """(In a child process.) The two-node scan through the library: writes its (path, status)
    records to ``output`` and prints the rows per node as JSON."""
    import ray
    from ray.data.block import BlockAccessor

    from hashmatch import cluster
    from hashmatch.index.options import MatchOptions

    options = MatchOptions(recover=True, time_limit=30.0)  # the command's defaults
    pin = cluster.pin_index(index)
    cluster.connect(address)
    listing = cluster.list_sources([folder], recursive=True)
    dataset = cluster.records_dataset(listing, pin, options, keep_skipped=True)
    heads = {n["NodeID"] for n in ray.nodes() if HEAD_RESOURCE in n["Resources"]}
    counts: Counter[str] = Counter()
    with open(output, "w", encoding="utf-8") as records:
        for bundle in dataset.iter_internal_ref_bundles():
            for entry in bundle.blocks:
                node = entry.metadata.exec_stats.node_id
                rows = BlockAccessor.for_block(ray.get(entry.ref)).to_arrow()
                counts["head" if node in heads else f"worker {node[:8]}"] += rows.num_rows
                for row in rows.select(["path", "status"]).to_pylist():
                    records.write(json.dumps(row) + "\n")
    print(json.dumps(dict(sorted(counts.items()))))


def run_rounds(space: Workspace, repeats: int) -> tuple[dict[Contender, Timings], dict[str, int]]:
    """Every contender ``repeats`` times, interleaved; per-node files of the last two-node run."""
    timings = {contender: Timings() for contender in CONTENDERS}
    expected: frozenset[tuple[str, str]] | None = None
    per_node: dict[str, int] = {}
    for round_number in range(repeats):
        print(f"round {round_number + 1} of {repeats}", file=sys.stderr, flush=True)
        for contender in CONTENDERS:
            last = round_number == repeats - 1 and len(contender.nodes) > 1
            pairs, counts = measure(space, contender, timings[contender], node_counts=last)
            per_node = counts or per_node
            if expected is not None and pairs != expected:
                raise AssertionError(f"{contender.name}: records differ from the local scan's")
            expected = pairs
    statuses = Counter(status for _, status in expected or ())
    print(
        f"the same {len(expected or ())} paths and statuses in every run and contender"
        f" ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}), each path once"
    )
    return timings, per_node


def summarise(contender: Contender, runs: Timings, files: int) -> Summary:
    return Summary(
        name=contender.name,
        files=files,
        whole=statistics.median(runs.whole),
        startup=statistics.median(runs.startup),
        first_record=statistics.median(runs.first_record),
        cluster_up=statistics.median(runs.cluster_up) if runs.cluster_up else None,
    )


def figure(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}{suffix}"


def met(ratio: float, ok: bool) -> str:
    return "n/a" if math.isnan(ratio) else "met" if ok else "not met"


def report(entries: int, timings: dict[Contender, Timings], files: int) -> None:
    rows = [summarise(contender, runs, files) for contender, runs in timings.items()]
    local, single, double = rows
    repeats = len(timings[CONTENDERS[0]].whole)
    print(
        f"\n| {files} JPEGs (1, 4, 12 MP), {entries:,}-entry PDQ index, median of {repeats}"
        " | files | whole command s | start-up s | first record s | files/s once started"
        " | files/s whole command | once started vs local |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row.name} | {row.files} | {row.whole:.1f} | {row.startup:.1f}"
            f" | {row.first_record:.1f} | {figure(row.once_started)} | {row.whole_rate:.1f}"
            f" | {figure(row.once_started / local.once_started, 2, 'x')} |"
        )
    ratio = single.once_started / local.once_started
    print(
        f"\nRay on 2 CPUs vs the local scan, once started: {figure(ratio, 2, 'x')}"
        f" (target >= 0.85x): {met(ratio, ratio >= 0.85)}"
    )
    ratio = double.once_started / single.once_started
    print(
        f"two nodes x 1 CPU vs one node x 2 CPUs, once started: {figure(ratio, 2, 'x')}"
        f" (target within 10%): {met(ratio, abs(ratio - 1) <= 0.10)}"
    )
    ups = ", ".join(f"{row.name} {figure(row.cluster_up)}s" for row in rows[1:])
    print(f"Ray clusters' own start (ray start until every CPU is registered): {ups}")


def report_nodes(per_node: dict[str, int]) -> None:
    total = sum(per_node.values()) or 1
    split = ", ".join(f"{node} {n} ({n / total:.0%})" for node, n in per_node.items())
    print(f"files per node, two-node run (a library run, by Ray Data's block metadata): {split}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--photos", type=int, default=42, help="source photos (x3 sizes)")
    parser.add_argument(
        "--copies", type=int, default=24, help="hard links of each file (8: bench/scan.py's 1,008)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="60 files, 20k entries, 1 repeat: a check"
    )
    # the child processes' jobs (a driver each)
    parser.add_argument("--ray-ready", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--node-counts", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ray_ready:
        address, nodes, cpus = args.ray_ready
        ray_ready(address, int(nodes), int(cpus))
        return
    if args.node_counts:
        node_counts(*args.node_counts)
        return
    if args.quick:
        args.entries, args.photos, args.copies, args.repeats = 20_000, 5, 4, 1
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # so the clusters are stopped
    space = workspace(args.entries, args.photos, args.copies)
    try:
        timings, per_node = run_rounds(space, args.repeats)
    except KeyboardInterrupt:
        print("interrupted (every Ray node started here is stopped)", file=sys.stderr)
        raise SystemExit(130) from None
    report(args.entries, timings, space.files)
    report_nodes(per_node)
    if args.quick:
        print("(--quick checks that the benchmark runs: too few files for its rates to mean much)")


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
