"""Index benchmark: hashmatch's index against faiss's binary indexes, same codes, one run.

    python bench/index.py [--sizes 100000,1000000] [--large] [--queries 1000]

For random 256-bit (PDQ) and 64-bit codes with planted neighbours at distances 0..40, prints
per contender: build time, load time, size on disk, process RSS, single-query p50/p99, batch
throughput, dihedral (8-variant) query p50, and recall against brute force (must be 1.0).
``--large`` adds 10 million PDQ codes, including a build from a 10M-line CSV.
Each contender runs in its own process (one core) so RSS and timings do not mix.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RADIUS = {256: 31, 64: 10}
MULTIHASH = {256: (16, 16, 1), 64: (4, 16, 2)}  # nhash, bits per hash, nflip: exact at RADIUS


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_data(folder: Path, count: int, bits: int, queries: int, seed: int) -> None:
    """Codes, queries planted at distances 0..40 from random codes, and the exact truth."""
    import faiss

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(count, bits // 8), dtype=np.uint8)
    picks = rng.choice(count, size=queries, replace=False)
    planted = codes[picks].copy()
    distances = rng.integers(0, 41, size=queries)
    for row, distance in enumerate(distances):
        for bit in rng.choice(bits, size=distance, replace=False):
            planted[row, bit // 8] ^= 1 << (7 - bit % 8)
    codes.tofile(folder / "codes.u8")
    planted.tofile(folder / "queries.u8")
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(codes)
    limits, _, labels = flat.range_search(planted, RADIUS[bits] + 1)
    truth = [sorted(labels[limits[i] : limits[i + 1]].tolist()) for i in range(queries)]
    (folder / "truth.json").write_text(json.dumps(truth))
    with open(folder / "list.csv", "w") as file:
        file.write("algorithm,hash,id\n")
        algorithm = "pdq" if bits == 256 else "phash"
        hexes = codes.view(np.uint8)
        for i in range(0, count, 100_000):
            block = hexes[i : i + 100_000]
            file.writelines(
                f"{algorithm},{row.tobytes().hex()},e{i + j}\n" for j, row in enumerate(block)
            )


def run_contender(name: str, folder: Path, bits: int, count: int, queries: int) -> dict:
    """Run one contender in fresh processes (hashmatch: one to build, one to load and search,
    so the build's memory does not count as the loaded index's) and return its measurements."""
    steps = ["hashmatch-build", "hashmatch"] if name == "hashmatch" else [name]
    result: dict = {}
    for step in steps:
        command = [sys.executable, __file__, "--child", step, str(folder), str(bits)]
        command += [str(count), str(queries)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            lines = completed.stderr.strip().splitlines()
            return {"error": lines[-1] if lines else "?"}
        result.update(json.loads(completed.stdout.strip().splitlines()[-1]))
    return result


def child(name: str, folder: Path, bits: int, count: int, queries: int) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)
    baseline = rss_mib()
    codes = np.fromfile(folder / "codes.u8", dtype=np.uint8).reshape(count, bits // 8)
    planted = np.fromfile(folder / "queries.u8", dtype=np.uint8).reshape(queries, bits // 8)
    truth = json.loads((folder / "truth.json").read_text())
    radius = RADIUS[bits]
    result: dict = {}
    if name == "hashmatch-build":
        from hashmatch import ListSource, build_index

        started = time.perf_counter()
        build_index([ListSource(folder / "list.csv")], folder / "idx")
        return {"build_s": time.perf_counter() - started}
    if name == "hashmatch":
        from hashmatch.index.artifact import resolve_version
        from hashmatch.index.loaded import LoadedIndex

        del codes
        index = folder / "idx"
        baseline = rss_mib()
        started = time.perf_counter()
        loaded = LoadedIndex(resolve_version(index), verify=True)
        result["load_s"] = time.perf_counter() - started
        result["rss_load_mib"] = rss_mib()
        algorithm = loaded.algorithms["pdq" if bits == 256 else "phash"]
        version = resolve_version(index)
        result["disk_mib"] = sum(p.stat().st_size for p in version.iterdir()) / 2**20
        result["kind"] = algorithm.searcher.kind
        # rows are stored in key order: map back to the input order for recall
        keys_order = np.asarray(algorithm.entry_rows) - 1  # entry rowids start at 1

        def search(batch: np.ndarray) -> list[list[int]]:
            owners, rows, _ = algorithm.searcher.search(batch, radius)
            found = [[] for _ in range(len(batch))]
            for owner, row in zip(owners.tolist(), keys_order[rows].tolist(), strict=True):
                found[owner].append(row)
            return found
    else:
        started = time.perf_counter()
        if name == "faiss flat":
            index = faiss.IndexBinaryFlat(bits)
        else:
            nhash, hash_bits, nflip = MULTIHASH[bits]
            index = faiss.IndexBinaryMultiHash(bits, nhash, hash_bits)
            index.nflip = nflip
        index.add(codes)
        result["build_s"] = time.perf_counter() - started
        result["rss_load_mib"] = rss_mib()
        result["load_s"] = float("nan")
        result["disk_mib"] = float("nan")
        result["kind"] = name

        def search(batch: np.ndarray) -> list[list[int]]:
            limits, _, labels = index.range_search(batch, radius + 1)
            return [labels[limits[i] : limits[i + 1]].tolist() for i in range(len(batch))]

    single = []
    for row in range(min(300, queries)):
        started = time.perf_counter()
        search(planted[row : row + 1])
        single.append(time.perf_counter() - started)
    started = time.perf_counter()
    found = search(planted)
    result["batch_qps"] = queries / (time.perf_counter() - started)
    rng = np.random.default_rng(1)
    dihedral = []
    for row in range(min(100, queries)):
        group = np.vstack([planted[row : row + 1], rng.integers(0, 256, (7, bits // 8), np.uint8)])
        started = time.perf_counter()
        search(group)
        dihedral.append(time.perf_counter() - started)
    expected = sum(len(t) for t in truth)
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True))
    result.update(
        rss_mib=rss_mib(),
        rss_delta_mib=rss_mib() - baseline,
        p50_ms=float(np.median(single) * 1e3),
        p99_ms=float(np.percentile(single, 99) * 1e3),
        dihedral_p50_ms=float(np.median(dihedral) * 1e3),
        recall=hits / expected if expected else 1.0,
        truth=expected,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--large", action="store_true", help="also 10M PDQ codes")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--contenders", default="hashmatch,faiss flat,faiss multihash", help="comma-separated"
    )
    parser.add_argument("--bits", default="256,64", help="code sizes to run, comma-separated")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, folder, bits, count, queries = args.child
        print(json.dumps(child(name, Path(folder), int(bits), int(count), int(queries))))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    bit_sizes = [int(b) for b in args.bits.split(",")]
    plans = [(bits, n) for bits in bit_sizes for n in sizes]
    if args.large:
        plans.append((256, 10_000_000))
    rows = []
    for bits, count in plans:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as scratch:
            folder = Path(scratch)
            make_data(folder, count, bits, args.queries, seed=count + bits)
            for name in args.contenders.split(","):
                measured = run_contender(name, folder, bits, count, args.queries)
                rows.append((bits, count, name, measured))
                print(_row(bits, count, name, measured), flush=True)
    print()
    print(_table(rows))


def _row(bits: int, count: int, name: str, m: dict) -> str:
    if "error" in m:
        return f"{bits}-bit {count:>10,} {name:16} ERROR {m['error']}"
    return (
        f"{bits}-bit {count:>10,} {name:16} {m['kind']:>5} build {m['build_s']:7.1f}s "
        f"load {m['load_s']:5.2f}s disk {m['disk_mib']:7.0f}MiB "
        f"rss {m['rss_load_mib']:6.0f}/{m['rss_mib']:6.0f}MiB "
        f"p50 {m['p50_ms']:7.3f}ms p99 {m['p99_ms']:7.3f}ms batch {m['batch_qps']:8.0f}q/s "
        f"dihedral p50 {m['dihedral_p50_ms']:7.3f}ms recall {m['recall']:.4f}"
    )


def _table(rows: list) -> str:
    header = (
        "| codes | N | contender | build s | load s | disk MiB | RSS MiB loaded / after queries"
        " | p50 ms | p99 ms | batch q/s | dihedral p50 ms | recall |"
    )
    lines = [header, "|" + "---|" * 12]
    for bits, count, name, m in rows:
        if "error" in m:
            lines.append(f"| {bits} | {count:,} | {name} | error: {m['error']} |")
            continue
        lines.append(
            f"| {bits} | {count:,} | {name} | {m['build_s']:.1f} | {m['load_s']:.2f} |"
            f" {m['disk_mib']:.0f} | {m['rss_load_mib']:.0f} / {m['rss_mib']:.0f} |"
            f" {m['p50_ms']:.3f} | {m['p99_ms']:.3f} |"
            f" {m['batch_qps']:.0f} | {m['dihedral_p50_ms']:.3f} | {m['recall']:.4f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
