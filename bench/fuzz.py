"""Fuzz the two hostile-input surfaces: image bytes and hash list files.

    python bench/fuzz.py --minutes 5 --target all --crashes /tmp/hashmatch-crashes
    python bench/fuzz.py --replay /tmp/hashmatch-crashes/images-*.bin

Every input must keep the contract of :mod:`hashmatch.fixtures.fuzz_targets`: only
``HashmatchError`` escapes, no input takes more than 2 s, a list reports each bad line with a
line number the file has. Inputs start from the seed corpus of
:mod:`hashmatch.fixtures.fuzz_seeds`. The engine is atheris (libFuzzer, coverage-guided over
hashmatch's and Pillow's Python code) when it imports, else hypothesis drawing random mutations
of the seeds. Each target runs ``--minutes`` in a child process (both at once with ``all``), so
a native crash or hang inside a decoder is caught and reported, and the child restarted.

A failure is saved once per distinct signature as ``TARGET-ID.bin`` (the raw input; list inputs
start with one byte saying how the list is read, see ``list_input``) with ``TARGET-ID.json``
(what happened). Native crashes, out-of-memory and timeouts are libFuzzer's
``TARGET-native-*`` files. This is a tool, not a test: the seeds and fixed failures are
replayed by ``tests/test_fuzz_seeds.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS = ("images", "lists")
INPUT_TIMEOUT_SECONDS = 20
"""An input running this long is a hang: libFuzzer's -timeout, the hypothesis engine's alarm."""
RSS_LIMIT_MB = 2048
MAX_RESTARTS = 20


def main() -> None:
    args = _parse_args()
    if args.worker:
        _run_worker(args.worker, args.seconds, Path(args.crashes), args.engine)
    elif args.replay:
        sys.exit(_replay(args.replay))
    else:
        _run_parent(args)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="per target")
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--crashes", help="reproducer directory [default: a new temp dir]")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="re-run saved inputs")
    parser.add_argument("--worker", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    return parser.parse_args()


# --- parent: run workers, restart them after native failures, summarise ---------------------


def _run_parent(args: argparse.Namespace) -> None:
    crashes = Path(args.crashes or tempfile.mkdtemp(prefix="hashmatch-fuzz-"))
    crashes.mkdir(parents=True, exist_ok=True)
    engine = _choose_engine(args.engine)
    targets = TARGETS if args.target == "all" else (args.target,)
    seconds = args.minutes * 60
    print(f"fuzzing {', '.join(targets)} for {seconds:.0f} s each with {engine}; to {crashes}")
    runs = [_TargetRun(target, engine, seconds, crashes) for target in targets]
    while any([run.step() for run in runs]):  # a list: every run steps each time
        time.sleep(1)
    for run in runs:
        run.report()


def _choose_engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "hypothesis"
    return "atheris"


class _TargetRun:
    """One target's child process, restarted until its time is used up."""

    def __init__(self, target: str, engine: str, seconds: float, crashes: Path) -> None:
        self.target, self.engine, self.crashes = target, engine, crashes
        self.deadline = time.monotonic() + seconds
        self.restarts = 0
        self.child: subprocess.Popen[bytes] | None = None
        self.started = self.allowed = 0.0
        self.log = crashes / f"{target}.log"
        self.pids: list[int] = []

    def step(self) -> bool:
        """Start or check the child; False once this target is finished."""
        if self.child is not None:
            if self.child.poll() is None:
                if time.monotonic() - self.started < self.allowed + 120:
                    return True
                self.child.kill()  # hung beyond libFuzzer's own timeout
                self.child.wait()
                _note(self.crashes, self.target, "worker hung (see .current input)", "")
            self.child = None
        remaining = self.deadline - time.monotonic()
        if remaining < 5 or self.restarts > MAX_RESTARTS:
            return False
        self.restarts += 1
        self.allowed = remaining
        self.started = time.monotonic()
        command = [sys.executable, __file__, "--worker", self.target, "--seconds"]
        command += [f"{remaining:.0f}", "--crashes", str(self.crashes), "--engine", self.engine]
        with open(self.log, "ab") as log:
            self.child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.pids.append(self.child.pid)
        return True

    def report(self) -> None:
        paths = [self.crashes / f"{self.target}-stats-{pid}.json" for pid in self.pids]
        stats = [json.loads(path.read_text()) for path in paths if path.exists()]
        inputs = sum(s["inputs"] for s in stats)
        seconds = sum(s["seconds"] for s in stats)
        failures = sorted(self.crashes.glob(f"{self.target}-*.json"))
        failures = [p for p in failures if "-stats-" not in p.name]
        native = sorted(self.crashes.glob(f"{self.target}-native-*"))
        rate = inputs / seconds if seconds else 0.0
        print(
            f"\n{self.target}: {self.engine}, {seconds:.0f} s in {len(stats)} run(s),"
            f" {inputs} inputs, {rate:.0f} inputs/s, {len(failures) + len(native)} failure(s)"
        )
        for path in failures:
            record = json.loads(path.read_text())
            print(f"  {path.with_suffix('.bin').name}: {record['signature']}")
        for path in native:
            kind = path.name.removeprefix(f"{self.target}-native-").rsplit("-", 1)[0]
            print(f"  {path.name}: libFuzzer {kind} (replay it to see the cause)")


# --- worker: one target, one engine ---------------------------------------------------------


class _Recorder:
    """Runs inputs through a check, saves each new failure signature once, writes stats."""

    def __init__(self, target: str, crashes: Path, check: Callable[[bytes], Any]) -> None:
        self.target, self.crashes, self.check = target, crashes, check
        self.inputs = 0
        self.started = self.saved = time.monotonic()
        self.stats_path = crashes / f"{target}-stats-{os.getpid()}.json"
        self.rss_flagged = False

    def run(self, data: bytes) -> None:
        self.inputs += 1
        failure = self.check(data)
        if failure is not None and failure.signature.startswith("slow"):
            failure = self.check(data)  # slow twice, or it was a busy machine, not the input
        if failure is not None:
            self.save(data, failure.signature, failure.detail, failure.seconds)
        if not self.rss_flagged and _peak_rss_mb() > RSS_LIMIT_MB:
            self.rss_flagged = True
            self.save(data, f"peak RSS above {RSS_LIMIT_MB} MB", "", 0.0)
        if time.monotonic() - self.saved > 1.0:
            self.write_stats()

    def save(self, data: bytes, signature: str, detail: str, seconds: float) -> None:
        name = f"{self.target}-{hashlib.sha1(signature.encode()).hexdigest()[:12]}"
        if (self.crashes / f"{name}.json").exists():
            return
        (self.crashes / f"{name}.bin").write_bytes(data)
        record = {"signature": signature, "detail": detail, "seconds": round(seconds, 3)}
        (self.crashes / f"{name}.json").write_text(json.dumps(record, indent=1))
        print(f"NEW FAILURE {name}: {signature}", flush=True)

    def write_stats(self) -> None:
        self.saved = time.monotonic()
        stats = {"inputs": self.inputs, "seconds": round(self.saved - self.started, 1)}
        self.stats_path.write_text(json.dumps(stats))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _note(crashes: Path, target: str, signature: str, detail: str) -> None:
    name = f"{target}-{hashlib.sha1(signature.encode()).hexdigest()[:12]}"
    current = crashes / f"{target}.current"
    if current.exists():
        (crashes / f"{name}.bin").write_bytes(current.read_bytes())
    record = {"signature": signature, "detail": detail, "seconds": None}
    (crashes / f"{name}.json").write_text(json.dumps(record))


def _run_worker(target: str, seconds: float, crashes: Path, engine: str) -> None:
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["hashmatch", "PIL"]):
            check, seeds = _target(target, crashes)
        _fuzz_with_atheris(target, seconds, crashes, check, seeds)
    else:
        check, seeds = _target(target, crashes)
        _fuzz_with_hypothesis(target, seconds, crashes, check, seeds)


def _target(target: str, crashes: Path) -> tuple[Callable[[bytes], Any], list[bytes]]:
    from hashmatch.fixtures import fuzz_seeds, fuzz_targets

    if target == "images":
        images = {**fuzz_seeds.image_seeds(), **fuzz_seeds.image_reproducers()}
        return fuzz_targets.check_image, list(images.values())
    workdir = Path("/dev/shm") if Path("/dev/shm").is_dir() else crashes
    lists = {**fuzz_seeds.list_seeds(), **fuzz_seeds.list_reproducers()}
    seeds = [
        fuzz_targets.list_input(suffix, content, algorithm, mode)
        for suffix, content in lists.values()
        for algorithm in (None, "pdq")
        for mode in fuzz_targets.LIST_MODES
    ]
    return lambda data: fuzz_targets.check_list(data, str(workdir)), seeds


def _fuzz_with_atheris(
    target: str, seconds: float, crashes: Path, check: Callable[[bytes], Any], seeds: list[bytes]
) -> None:
    import atheris

    corpus = crashes / f"corpus-{target}"
    corpus.mkdir(exist_ok=True)
    for seed in seeds:
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    recorder = _Recorder(target, crashes, check)
    options = [
        f"-max_total_time={int(seconds)}",
        f"-timeout={INPUT_TIMEOUT_SECONDS}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={crashes}/{target}-native-",
        "-max_len=65536",
        "-use_value_profile=1",
        "-print_final_stats=1",
    ]
    atheris.Setup([sys.argv[0], *options, str(corpus)], recorder.run)
    try:
        atheris.Fuzz()
    finally:
        recorder.write_stats()


class _InputTimeout(BaseException):
    """Raised by the alarm when one input runs longer than INPUT_TIMEOUT_SECONDS."""


def _fuzz_with_hypothesis(
    target: str, seconds: float, crashes: Path, check: Callable[[bytes], Any], seeds: list[bytes]
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    recorder = _Recorder(target, crashes, check)
    current = crashes / f"{target}.current"

    def on_alarm(*_: object) -> None:
        raise _InputTimeout

    signal.signal(signal.SIGALRM, on_alarm)

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(seeds), st.integers(0, 2**64 - 1))
    def fuzz_one(seed: bytes, randomness: int) -> None:
        data = _mutate(bytearray(seed), random.Random(randomness), seeds)
        current.write_bytes(data)
        signal.alarm(INPUT_TIMEOUT_SECONDS)
        try:
            recorder.run(data)
        except _InputTimeout:
            recorder.save(data, "timeout", f"over {INPUT_TIMEOUT_SECONDS} s", 0.0)
        finally:
            signal.alarm(0)

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fuzz_one()
    recorder.write_stats()
    current.unlink(missing_ok=True)


_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def _mutate(buffer: bytearray, rng: random.Random, seeds: list[bytes]) -> bytes:
    """A few random edits, the kinds libFuzzer makes: flips, magic ints, cuts and splices."""
    for _ in range(rng.randint(1, 6)):
        where, size, edit = rng.randint(0, len(buffer)), rng.randint(1, 64), rng.randint(0, 6)
        if edit == 0 and where < len(buffer):
            buffer[where] ^= 1 << rng.randint(0, 7)
        elif edit == 1:
            width = rng.choice((1, 2, 4))
            value = rng.choice(_INTERESTING) & ((1 << 8 * width) - 1)
            buffer[where : where + width] = value.to_bytes(width, rng.choice(("big", "little")))
        elif edit == 2:
            buffer[where:where] = rng.randbytes(rng.randint(1, 16))
        elif edit == 3:
            del buffer[where : where + size]
        elif edit == 4:
            start = rng.randint(0, len(buffer))
            buffer[where:where] = buffer[start : start + size] * rng.randint(1, 8)
        elif edit == 5:
            other = rng.choice(seeds)
            start = rng.randint(0, len(other))
            buffer[where : where + size] = other[start : start + size]
        else:
            del buffer[where:]
    return bytes(buffer)


# --- replay -----------------------------------------------------------------------------------


def _replay(paths: list[str]) -> int:
    from hashmatch.fixtures.fuzz_targets import check_image, check_list

    failed = 0
    for name in paths:
        path = Path(name)
        check = check_list if path.name.startswith("lists") else check_image
        failure = check(path.read_bytes())
        failed += failure is not None
        outcome = "ok" if failure is None else f"FAILS: {failure.signature}\n{failure.detail}"
        print(f"{path.name}: {outcome}")
    return 1 if failed else 0


if __name__ == "__main__":
    main()
