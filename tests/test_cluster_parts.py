"""The cluster scan's parts without a cluster: listing, record shapes, the version pin, the
actor's work on a batch (called here, in this process), and what the CLI says without Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hashmatch import (
    EntryList,
    IndexVersionError,
    Matcher,
    MatchOptions,
    build_index,
    hash_image,
)
from hashmatch.cluster.listing import list_sources
from hashmatch.cluster.pinning import open_pinned, pin_index
from hashmatch.cluster.pipeline import cluster_failure
from hashmatch.cluster.remote import is_url
from hashmatch.errors import ClusterError
from hashmatch.fixtures.hostile import write_hostile_corpus
from hashmatch.fixtures.service import jpeg_bytes, known_index
from hashmatch.index.scan_records import nested_from_flat, restyled, scan_record
from hashmatch.walking import walk_images


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An index of three photos; uploads with copies of them, a stranger, broken files, a
    text file, a nested folder and the hostile corpus."""
    root = tmp_path_factory.mktemp("cluster-parts")
    known = known_index(root)
    uploads = root / "uploads"
    (uploads / "nested").mkdir(parents=True)
    for number, photo in enumerate(known.photos):
        (uploads / f"known-{number}.jpg").write_bytes(photo)
    (uploads / "nested" / "stranger.jpg").write_bytes(jpeg_bytes(77))
    (uploads / "nested" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (uploads / "notes.txt").write_text("not an image")
    (uploads / "renamed.dat").write_bytes(known.photos[0])  # an image by content
    write_hostile_corpus(uploads / "hostile")
    return known.path, uploads


def _local_records(index: Path, uploads: Path, with_hashes: bool) -> dict[str, dict]:
    entries = [e for e in walk_images([uploads], recursive=True) if e.skipped is None]
    matcher = Matcher.open(index)
    return {
        str(result.source): scan_record(str(result.source), result, with_hashes, "nested")
        for result in matcher.match_many(entries, MatchOptions())
    }


def _batch(rows: list[dict]) -> object:
    import pyarrow

    # the surrogate-escaped name of the hostile corpus cannot be Arrow text: Ray keeps such
    # rows as Python objects, which reach the actor as the same dicts
    if any(_not_utf8(row["path"]) for row in rows):
        return _Rows(rows)
    return pyarrow.Table.from_pylist(rows)


class _Rows:
    """A batch as Ray hands over rows it stored as Python objects."""

    def __init__(self, rows: list[dict]) -> None:
        self._rows = rows

    def to_pylist(self) -> list[dict]:
        return self._rows


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _columns_to_rows(columns: object) -> list[dict]:
    if isinstance(columns, dict):
        names = list(columns)
        rows = zip(*columns.values(), strict=True)
        return [dict(zip(names, values, strict=True)) for values in rows]
    return columns.to_pylist()  # type: ignore[attr-defined]


@pytest.mark.parametrize("with_hashes", [False, True])
def test_the_actor_gives_exactly_the_local_scans_records(
    world: tuple[Path, Path], with_hashes: bool
) -> None:
    pytest.importorskip("pyarrow", reason="the ray extra brings pyarrow")
    from hashmatch.cluster.actor import SKIPPED, ScanActor

    index, uploads = world
    expected = _local_records(index, uploads, with_hashes)
    listing = list_sources([uploads], recursive=True)
    actor = ScanActor(pin_index(index), MatchOptions(), with_hashes, keep_skipped=True)
    rows: list[dict] = []
    for start in range(0, len(listing.rows), 7):  # batches as Ray would cut them
        rows += _columns_to_rows(actor(_batch(listing.rows[start : start + 7])))
    skipped = [row for row in rows if row["status"] == SKIPPED]
    algorithms = pin_index(index).algorithms
    got = {
        row["path"]: nested_from_flat(row, algorithms, with_hashes)
        for row in rows
        if row["status"] != SKIPPED
    }
    assert got == expected
    assert {Path(row["path"]).name for row in skipped} >= {"notes.txt"}
    assert all(row["error"] == "not an image" for row in skipped)
    statuses = {Path(path).name: record["status"] for path, record in got.items()}
    assert statuses["known-0.jpg"] == statuses["renamed.dat"] == "match"
    assert statuses["broken.jpg"] == "error"


def test_actor_skips_what_the_local_walk_skips(world: tuple[Path, Path]) -> None:
    _, uploads = world
    local = list(walk_images([uploads], recursive=True))
    listing = list_sources([uploads], recursive=True)
    skipped_by_content = {e.path for e in local if e.skipped == "not an image"}
    skipped_at_listing = [e for e in local if e.skipped and e.skipped != "not an image"]
    assert listing.skipped == len(skipped_at_listing)  # symbolic links, counted by the driver
    unread = {row["path"] for row in listing.rows if row["unread"]}
    assert skipped_by_content <= unread  # left to the actor, which reads the file
    kept = {e.path for e in local if e.skipped is None} | skipped_by_content
    assert {row["path"] for row in listing.rows} == kept


def test_listing_leaves_out_what_an_earlier_run_recorded(world: tuple[Path, Path]) -> None:
    _, uploads = world
    everything = list_sources([uploads], recursive=True)
    done = {everything.rows[0]["path"], everything.rows[1]["path"]}
    rest = list_sources([uploads], recursive=True, done=done)
    assert rest.resumed == 2
    assert len(rest.rows) == len(everything.rows) - 2
    assert not done & {row["path"] for row in rest.rows}


def test_a_path_named_explicitly_is_read_even_if_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    listing = list_sources([text, tmp_path / "missing.jpg"])
    rows = {Path(row["path"]).name: row for row in listing.rows}
    assert rows["notes.txt"]["unread"] is False  # the loader says what is wrong with it
    assert rows["missing.jpg"]["error"] == "no such file or directory"


def test_flat_records_convert_back_to_the_nested_ones(world: tuple[Path, Path]) -> None:
    index, uploads = world
    algorithms = pin_index(index).algorithms
    for with_hashes in (False, True):
        for record in _local_records(index, uploads, with_hashes).values():
            flat = restyled(record, "flat")
            assert all(not isinstance(v, (list, dict)) for v in flat.values())
            assert nested_from_flat(flat, algorithms, with_hashes) == record


def test_urls_and_paths_are_told_apart() -> None:
    assert is_url("s3://bucket/prefix") and is_url("gs://b/x") and is_url("file:///tmp/x")
    assert is_url("abfs://container@account.dfs.core.windows.net/x")
    assert not is_url("/data/uploads") and not is_url("c:photo.jpg") and not is_url("x.jpg")


def test_a_node_without_the_pinned_version_is_refused(tmp_path: Path) -> None:
    known = known_index(tmp_path)
    pin = pin_index(known.path)
    assert open_pinned(pin).version == pin.version
    with pytest.raises(IndexVersionError, match="has no index version 20990101"):
        open_pinned(replace(pin, version="20990101-000000-0000"))
    with pytest.raises(IndexVersionError, match="differs from the driver's"):
        open_pinned(replace(pin, checksum="0" * 64))


def test_a_rebuild_mid_scan_does_not_move_the_actors_to_the_new_version(tmp_path: Path) -> None:
    known = known_index(tmp_path)
    pin = pin_index(known.path)
    new = hash_image(jpeg_bytes(99))["pdq"].hex
    build_index([EntryList([("pdq", new, "NEW", "n1", None)], name="NEW")], known.path)
    assert pin_index(known.path).version != pin.version
    assert open_pinned(pin).version == pin.version  # the version the scan started on


def test_cluster_failures_name_the_actors_error() -> None:
    inner = IndexVersionError("node-7: /idx: this node has no index version v1")
    wrapped = RuntimeError("ray.exceptions.ActorDiedError: the actor died")
    wrapped.__cause__ = inner
    assert str(cluster_failure(wrapped)) == str(inner)
    trace = "Traceback...\n  raise IndexVersionError(\n"
    text = RuntimeError(trace + "hashmatch.errors.IndexVersionError: node-7: no v1\n")
    assert str(cluster_failure(text)) == "node-7: no v1"
    assert "the cluster scan failed" in str(cluster_failure(RuntimeError("boom")))
    assert isinstance(cluster_failure(RuntimeError("x")), ClusterError)


def test_engine_ray_without_ray_says_what_to_install(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    index, uploads = world
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    env.pop("RAY_ADDRESS", None)
    command = ["scan", str(uploads), "-i", str(index), "--engine", "ray", "-f", "jsonl"]
    done = subprocess.run(
        [sys.executable, "-m", "hashmatch.cli", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'hashmatch[ray]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
