"""The report of ``bench/serve.py``: one line a phase as it ends, then Markdown tables.

The tables put the HTTP numbers beside the library's on the same cores (as ratios), the
memory of every process (VmRSS and Pss, because VmRSS counts a shared memory-mapped index
once per process), the reloads under load, and the targets. PASS/FAIL is informative only.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

from load import Load  # bench/load.py
from serve_setup import RELOAD_ENTRIES  # bench/serve_setup.py


@dataclass
class Reloads:
    """What the reload phase of one server-process count saw."""

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
        """No failed request, no problem, and the last version published is the one served."""
        changed = bool(self.published) and self.first != self.last == self.published[-1]
        return self.failures == 0 and changed and not self.problems


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


def row(load: Load) -> str:
    """The line printed as a phase ends, so a long run shows its progress."""
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
        totals[workers] = [sum(rss for *_, rss, _ in processes), sum(pss for *_, pss in processes)]
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
