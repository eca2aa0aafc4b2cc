"""The live banks' phases of ``bench/serve.py``: how soon an add matches, lookups beside an
overlay, adds per second.

* **add -> matchable**: ``POST /c/bank/BENCH/signal`` on the writing instance (``--bank-writer``,
  2 server processes), then ``GET /m/raw_lookup`` of that hash until it matches, on the same
  instance and on a second, reading instance of the same bank directory (1 server process);
  the time from the add's request to the first matching answer, p50/p99 over ``--bank-adds``
  adds. A lookup may land on either server process of an instance (``SO_REUSEPORT``).
* **lookups with an overlay** of 0, 1,000 and 100,000 added hashes (written beforehand with
  the library writer, then served by a reading instance each, all three at once and measured
  in five interleaved rounds): raw_lookup at concurrency 1 and 16, half hits on the published
  index, half misses.
* **adds/s**: 16 clients adding one hash a request for a phase.

Targets: same instance p99 <= 50 ms; second instance <= its poll interval + 100 ms; lookup p50
with 100,000 added <= 2x without.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from load import Bounds, Call, Load, generate_load
from serve_calls import raw_lookup_calls
from serve_report import number, row, table
from serve_setup import Served, Server

from hashmatch.banks import BankWriter, NewContent
from hashmatch.fixtures.hashlists import random_codes
from hashmatch.fixtures.service import serve_process

__all__ = ["BankRun", "bank_phases", "print_banks"]

OVERLAY_SIZES = (0, 1_000, 100_000)
POLL_INTERVAL = 1.0
_MATCH_WAIT = 10.0


@dataclass
class BankRun:
    same_ms: list[float] = field(default_factory=list)
    second_ms: list[float] = field(default_factory=list)
    unmatched: int = 0
    """Adds that no lookup matched within the wait (a failure, reported)."""
    adds: Load | None = None
    overlay: dict[int, list[Load]] = field(default_factory=dict)


def _overlay_banks(work: Path, size: int) -> Path:
    """A bank directory holding ``size`` added hashes (cached: the same seed every run)."""
    folder = work / f"banks-{size}"
    meta = folder / "bench.json"
    if meta.is_file() and json.loads(meta.read_text()).get("size") == size:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    with BankWriter(folder) as writer:
        writer.create_bank("BENCH")
        codes = random_codes(size, seed=500 + size)
        for start in range(0, size, 10_000):
            chunk = codes[start : start + 10_000]
            writer.add("BENCH", [NewContent({"pdq": c.tobytes().hex()}) for c in chunk])
    meta.write_text(json.dumps({"size": size}))
    return folder


def _matches(client: httpx.Client, code: str, content: int) -> bool:
    answer = client.get("/m/raw_lookup", params={"signal": code, "signal_type": "pdq"})
    return answer.status_code == 200 and content in answer.json()["matches"]


def _until_matched(client: httpx.Client, code: str, content: int, started: float) -> float | None:
    """Milliseconds from ``started`` to the first lookup that matches (None: not in time)."""
    while time.perf_counter() - started < _MATCH_WAIT:
        if _matches(client, code, content):
            return (time.perf_counter() - started) * 1e3
    return None


def add_to_match(served: Served, work: Path, bounds: Bounds, adds: int, run: BankRun) -> None:
    banks = work / "banks-live"
    shutil.rmtree(banks, ignore_errors=True)
    writer_args = ("--bank-writer", "--banks", str(banks), "--workers", "2")
    reader_args = ("--banks", str(banks), "--workers", "1")
    reader_args += ("--bank-poll-interval", str(POLL_INTERVAL))
    with (
        serve_process(served.index, *writer_args, log_dir=work) as writer_process,
        serve_process(served.index, *reader_args, log_dir=work) as reader_process,
    ):
        Server(writer_process, 2), Server(reader_process, 1)
        same = httpx.Client(base_url=writer_process.base_url, timeout=30)
        second = httpx.Client(base_url=reader_process.base_url, timeout=30)
        same.post("/c/banks", json={"name": "BENCH"}).raise_for_status()
        codes = [c.tobytes().hex() for c in random_codes(adds, seed=77)]
        for code in codes:
            started = time.perf_counter()
            answer = same.post("/c/bank/BENCH/signal", json={"pdq": code})
            answer.raise_for_status()
            content = int(answer.json()["id"])
            took = _until_matched(same, code, content, started)
            other = _until_matched(second, code, content, started)
            run.unmatched += (took is None) + (other is None)
            if took is not None:
                run.same_ms.append(took)
            if other is not None:
                run.second_ms.append(other)
        print(f"  add -> matchable: {len(codes)} adds", flush=True)
        add_codes = [c.tobytes().hex() for c in random_codes(5_000, seed=78)]
        calls = [
            Call(
                "POST", "/c/bank/BENCH/signal", json.dumps({"pdq": c}).encode(), "application/json"
            )
            for c in add_codes
        ]
        adding = Bounds(min(bounds.requests, 20_000), bounds.seconds, 0.0, bounds.client)
        run.adds = generate_load(
            writer_process.base_url, calls, 16, adding, "POST /c/bank/../signal"
        )
        print(f"  adds/s: {run.adds.rate:.0f}", flush=True)
        same.close()
        second.close()


def overlay_lookups(served: Served, work: Path, bounds: Bounds, run: BankRun) -> None:
    """Every overlay size served at once by its own instance, measured in interleaved
    rounds: the machine's drift (it is shared and noisy) falls on every size alike."""
    rounds = 5
    share = Bounds(max(1, bounds.requests // rounds), bounds.seconds / rounds, 0.0, bounds.client)
    calls = raw_lookup_calls(served, stand_in=False)
    with contextlib.ExitStack() as stack:
        servers = {}
        for size in OVERLAY_SIZES:
            banks = _overlay_banks(work, size)
            process = stack.enter_context(
                serve_process(served.index, "--banks", str(banks), "--workers", "1", log_dir=work)
            )
            servers[size] = Server(process, 1)
        for server in servers.values():
            generate_load(
                server.base_url, calls, 1, Bounds(200, bounds.warmup, 0.0, bounds.client), "warm-up"
            )
        measured: dict[tuple[int, int], list[Load]] = {}
        for _ in range(rounds):
            for size, server in servers.items():
                for clients in (1, 16):
                    label = f"raw_lookup, overlay {size:,}"
                    load = generate_load(server.base_url, calls, clients, share, label)
                    measured.setdefault((size, clients), []).append(load)
    for size in OVERLAY_SIZES:
        run.overlay[size] = [_merged(measured[(size, clients)]) for clients in (1, 16)]
        print(
            f"  overlay {size:,}: " + "; ".join(row(load) for load in run.overlay[size]), flush=True
        )


def _merged(loads: list[Load]) -> Load:
    merged = Load(loads[0].label, loads[0].concurrency)
    for load in loads:
        merged.requests += load.requests
        merged.seconds += load.seconds
        merged.latencies += load.latencies
        merged.errors += load.errors
        merged.wrong += load.wrong
        merged.problem = merged.problem or load.problem
    return merged


def bank_phases(served: Served, work: Path, bounds: Bounds, adds: int) -> BankRun:
    run = BankRun()
    print(f"-- live banks on the {served.entries:,}-entry index", flush=True)
    overlay_lookups(served, work, bounds, run)
    add_to_match(served, work, bounds, adds, run)
    return run


def _ms(values: list[float], q: float) -> str:
    return number(float(np.percentile(values, q))) if values else "-"


def print_banks(run: BankRun) -> None:
    print("\nLive banks: add -> matchable (ms from the add's request to the first match)")
    table(
        ["where", "adds", "p50", "p99", "max"],
        [
            [
                "same instance",
                str(len(run.same_ms)),
                _ms(run.same_ms, 50),
                _ms(run.same_ms, 99),
                _ms(run.same_ms, 100),
            ],
            [
                "second instance",
                str(len(run.second_ms)),
                _ms(run.second_ms, 50),
                _ms(run.second_ms, 99),
                _ms(run.second_ms, 100),
            ],
        ],
    )
    if run.unmatched:
        print(f"!! {run.unmatched} adds not matched within {_MATCH_WAIT:g} s")
    if run.adds is not None:
        print(
            f"adds/s at 16 clients: {run.adds.rate:.0f} (p50 {number(run.adds.ms(50))} ms,"
            f" p99 {number(run.adds.ms(99))} ms, errors {run.adds.errors})"
        )
    print("\nLive banks: raw_lookup with an overlay of added hashes (1 server process)")
    base = run.overlay.get(0)
    rows = []
    for size, loads in run.overlay.items():
        for position, load in enumerate(loads):
            ratio = load.ms(50) / base[position].ms(50) if base else float("nan")
            rows.append(
                [
                    f"{size:,}",
                    str(load.concurrency),
                    number(load.rate, 0),
                    number(load.ms(50)),
                    number(load.ms(99)),
                    f"{ratio:.2f}x",
                    str(load.errors + load.wrong),
                ]
            )
    table(["overlay", "clients", "req/s", "p50 ms", "p99 ms", "p50 vs 0", "errors"], rows)
    same99 = float(np.percentile(run.same_ms, 99)) if run.same_ms else float("inf")
    second99 = float(np.percentile(run.second_ms, 99)) if run.second_ms else float("inf")
    ratio = (
        run.overlay[100_000][0].ms(50) / run.overlay[0][0].ms(50)
        if 100_000 in run.overlay and 0 in run.overlay
        else float("inf")
    )
    print("\nLive banks: targets")
    for what, measured, passed in (
        ("same instance add -> matchable p99 <= 50 ms", f"{same99:.1f} ms", same99 <= 50),
        (
            f"second instance p99 <= poll interval + 100 ms ({POLL_INTERVAL * 1e3 + 100:.0f} ms)",
            f"{second99:.1f} ms",
            second99 <= POLL_INTERVAL * 1e3 + 100,
        ),
        ("lookup p50 with 100,000 added <= 2x without", f"{ratio:.2f}x", ratio <= 2),
    ):
        print(f"  {'PASS' if passed else 'FAIL'}  {what}: {measured}")
