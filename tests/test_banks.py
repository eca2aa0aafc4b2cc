"""Live banks, the library: the log's durability and damage handling, the one-writer lock,
the overlay's exactness against a brute-force scan, and what a rebuild keeps.

Service and command-line tests of banks are in their own modules; these need no server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hashmatch import BuildOptions, EntryList, Matcher, build_index
from hashmatch.banks import BankDirectory, BankFollower, BankWriter, NewContent
from hashmatch.banks.log import LogRead, read_tail
from hashmatch.banks.records import BankRecord, decode_line, encode_line
from hashmatch.banks.source import bank_sources, config_sources
from hashmatch.errors import BankError, BankLockedError
from hashmatch.fixtures.hashlists import flip_bits, random_codes
from hashmatch.index.config import load_config

FILE_CODES = random_codes(200, seed=11)


def _hex(code: np.ndarray) -> str:
    return code.tobytes().hex()


def _file_list() -> EntryList:
    return EntryList(
        [("pdq", _hex(c), "FILE", str(i)) for i, c in enumerate(FILE_CODES)], name="FILE"
    )


@pytest.fixture
def index(tmp_path: Path) -> Path:
    path = tmp_path / "index"
    build_index([_file_list()], path)
    return path


@pytest.fixture
def live(index: Path) -> tuple[Matcher, BankWriter, BankFollower]:
    follower = BankFollower(index / "banks")
    matcher = Matcher.open(index, banks=follower)
    writer = follower.writer()
    yield matcher, writer, follower
    writer.close()
    follower.close()


def _found(matcher: Matcher, code: np.ndarray | str) -> set[tuple[str, str | None]]:
    value = code if isinstance(code, str) else _hex(code)
    return {(m.list, m.entry_id) for m in matcher.lookup({"pdq": value}, dihedral=False)}


def _rebuild(index: Path) -> None:
    sources, exclusions = bank_sources(index / "banks")
    build_index([_file_list(), *sources], index, BuildOptions(exclusions=exclusions))


# -- the log --------------------------------------------------------------------------------


def test_a_record_survives_its_line_and_a_damaged_line_fails_its_checksum() -> None:
    record = BankRecord(
        "add", 3, 1796000000.5, "alice", {"id": 7, "signals": {"pdq": _hex(FILE_CODES[0])}}
    )
    line = encode_line(record)
    assert line.endswith(b"\n") and decode_line(line[:-1]) == record
    damaged = bytearray(line[:-1])
    damaged[20] ^= 0x01
    with pytest.raises(ValueError, match="checksum"):
        decode_line(bytes(damaged))
    with pytest.raises(ValueError, match="no checksum"):
        decode_line(b'{"op":"add"}')


def test_a_corrupted_line_is_reported_and_skipped_and_the_rest_still_reads(index: Path) -> None:
    with BankWriter(index / "banks") as writer:
        writer.create_bank("MOD")
        added = writer.add("MOD", [NewContent({"pdq": _hex(c)}) for c in random_codes(3, seed=5)])
        writer.add("MOD", [NewContent({"pdq": _hex(random_codes(1, seed=6)[0])})])
    log = index / "banks" / "MOD.log"
    lines = log.read_bytes().split(b"\n")
    damaged = bytearray(lines[1])
    damaged[len(damaged) // 2] ^= 0x20  # one flipped bit inside the first add's record
    lines[1] = bytes(damaged)
    log.write_bytes(b"\n".join(lines))

    directory = BankDirectory(index / "banks")
    directory.refresh()
    assert [(p.line, "checksum" in p.reason) for p in directory.problems] == [(2, True)]
    assert str(directory.problems[0]).startswith(f"{log}:2: ")
    contents = directory.bank("MOD").entries
    assert added[0].id not in contents
    assert {added[1].id, added[2].id} <= set(contents) and len(contents) == 3

    # a follower serving lookups keeps serving, and a writer still appends after the damage
    follower = BankFollower(index / "banks")
    matcher = Matcher.open(index, banks=follower)
    assert ("MOD", str(added[1].id)) in _found(matcher, added[1].signals["pdq"])
    with follower.writer() as writer:
        fresh = writer.add("MOD", [NewContent({"pdq": _hex(random_codes(1, seed=7)[0])})])
    assert ("MOD", str(fresh[0].id)) in _found(matcher, fresh[0].signals["pdq"])


def test_a_torn_last_line_is_invisible_to_readers_and_cut_by_the_next_writer(index: Path) -> None:
    with BankWriter(index / "banks") as writer:
        writer.create_bank("MOD")
        kept = writer.add("MOD", [NewContent({"pdq": _hex(random_codes(1, seed=8)[0])})])
    log = index / "banks" / "MOD.log"
    whole = log.read_bytes()
    with open(log, "ab") as file:  # a writer killed half-way through its line
        file.write(whole.split(b"\n")[1][:40])
    position = read_tail(LogRead(log))
    assert [r.op for r in position.records] == ["create", "add"] and not position.problems
    with BankWriter(index / "banks") as writer:
        later = writer.add("MOD", [NewContent({"pdq": _hex(random_codes(1, seed=9)[0])})])
    directory = BankDirectory(index / "banks")
    directory.refresh()
    assert not directory.problems
    assert set(directory.bank("MOD").entries) == {kept[0].id, later[0].id}


def test_records_are_checked_as_list_lines_are(index: Path) -> None:
    with BankWriter(index / "banks") as writer:
        writer.create_bank("MOD")
        with pytest.raises(BankError, match="64 hex digits"):
            writer.add("MOD", [NewContent({"pdq": "abc"})])
        with pytest.raises(BankError, match="all zeros"):
            writer.add("MOD", [NewContent({"pdq": "0" * 64})])
        with pytest.raises(BankError, match="unknown algorithm"):
            writer.add("MOD", [NewContent({"nope": "ab" * 32})])
        good = NewContent({"pdq": _hex(FILE_CODES[0])})
        with pytest.raises(BankError, match="content 2"):  # one bad item: nothing added
            writer.add("MOD", [good, NewContent({"pdq": "zz" * 32})])
        with pytest.raises(BankError, match="UPPER_WITH_UNDERSCORE"):
            writer.create_bank("lower")
        with pytest.raises(BankError, match="already exists") as exists:
            writer.create_bank("MOD")
        assert exists.value.status == 403
        with pytest.raises(BankError, match="bank 'NOPE' not found"):
            writer.add("NOPE", [good])
        with pytest.raises(BankError, match="5 years"):
            writer.add("MOD", [NewContent({"pdq": _hex(FILE_CODES[0])}, disable_until_ts=10**11)])
        assert writer.directory.bank("MOD").live_entries == 0


# -- one writer --------------------------------------------------------------------------


_HOLD_LOCK = textwrap.dedent(
    """
    import sys
    from hashmatch.banks import BankWriter
    writer = BankWriter(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_a_second_writer_is_refused_and_named_while_the_first_lives(tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(banks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(BankLockedError, match=f"another process writes.*pid {holder.pid}"):
            BankWriter(banks)
        reader = BankDirectory(banks)  # readers need no lock
        reader.refresh()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    with BankWriter(banks) as writer:  # the lock went with its process
        writer.create_bank("AFTER")


# -- durability under SIGKILL ---------------------------------------------------------------

_CONCURRENT_ADDS = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from hashmatch.banks import BankWriter, NewContent
    from hashmatch.fixtures.hashlists import random_codes

    writer = BankWriter(sys.argv[1])
    writer.create_bank("MOD")
    codes = random_codes(1000, seed=21)

    def add(number):
        entry = writer.add("MOD", [NewContent({"pdq": codes[number].tobytes().hex()})])[0]
        print(number, entry.id, flush=True)  # acknowledged: the add returned

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(add, range(1000)))
    """
)


def test_sigkill_mid_adds_keeps_every_acknowledged_add_and_shows_no_partial_record(
    tmp_path: Path,
) -> None:
    banks = tmp_path / "banks"
    writer = subprocess.Popen(
        [sys.executable, "-c", _CONCURRENT_ADDS, str(banks)], stdout=subprocess.PIPE, text=True
    )
    acknowledged: dict[int, int] = {}
    assert writer.stdout is not None
    for line in writer.stdout:
        number, content = map(int, line.split())
        acknowledged[number] = content
        if len(acknowledged) == 300:
            os.kill(writer.pid, signal.SIGKILL)
            break
    writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    for line in writer.stdout:  # acknowledgements already in the pipe count too
        number, content = map(int, line.split())
        acknowledged[number] = content

    directory = BankDirectory(banks)
    directory.refresh()
    assert not directory.problems  # no partial record is ever read
    entries = directory.bank("MOD").entries
    codes = random_codes(1000, seed=21)
    for number, content in acknowledged.items():
        assert entries[content].signals["pdq"] == codes[number].tobytes().hex()
    assert len(entries) < 1000  # it really was killed in the middle
    with BankWriter(banks) as again:  # the next writer appends after whatever was torn
        again.add("MOD", [NewContent({"pdq": codes[999].tobytes().hex()})])
    directory.refresh()
    assert not directory.problems


# -- the overlay ---------------------------------------------------------------------------


def test_the_overlay_is_exact_against_brute_force_at_every_distance_0_to_40(
    index: Path, live: tuple[Matcher, BankWriter, BankFollower]
) -> None:
    matcher, writer, _ = live
    rng = np.random.default_rng(3)
    queries = random_codes(6, seed=31)
    planted = [flip_bits(q, d, rng) for q in queries for d in range(0, 41, 2)]
    noise = list(random_codes(3000, seed=32))
    writer.create_bank("MOD")
    stored = writer.add("MOD", [NewContent({"pdq": _hex(c)}) for c in [*planted, *noise]])
    ids = np.array([e.id for e in stored])
    codes = np.stack([*planted, *noise])
    assert matcher.lookup({"pdq": _hex(queries[0])}, dihedral=False)  # the overlay answers
    for threshold in range(0, 41):
        for query in queries:
            distances = np.bitwise_count(codes ^ query).sum(axis=1)
            expected = {str(i) for i in ids[distances <= threshold].tolist()}
            found = matcher.lookup(
                {"pdq": _hex(query)}, thresholds={"pdq": threshold}, dihedral=False
            )
            got = {m.entry_id for m in found if m.list == "MOD"}
            assert got == expected, threshold
            assert all(
                m.distance == int(distances[ids == int(m.entry_id)][0])
                for m in found
                if m.list == "MOD"
            )


def test_disable_enable_delete_and_exclusions_apply_at_once_and_survive_a_rebuild(
    index: Path, live: tuple[Matcher, BankWriter, BankFollower]
) -> None:
    matcher, writer, follower = live
    writer.create_bank("MOD")
    codes = random_codes(4, seed=41)
    a, b, c, d = writer.add(
        "MOD", [NewContent({"pdq": _hex(x)}, note=f"n{i}") for i, x in enumerate(codes)]
    )
    assert _found(matcher, codes[0]) == {("MOD", str(a.id))}

    writer.set_disabled_until("MOD", a.id, 0)
    writer.delete("MOD", b.id)
    writer.set_disabled_until("MOD", c.id, 0)
    writer.set_disabled_until("MOD", c.id, 1)  # enabled again
    writer.exclude("MOD", [("hash", "pdq", _hex(FILE_CODES[3])), ("entry", "FILE", "4")])
    writer.exclude("MOD", [("entry", "MOD", str(d.id))])

    def check() -> None:
        assert _found(matcher, codes[0]) == set()
        assert _found(matcher, codes[1]) == set()
        assert _found(matcher, codes[2]) == {("MOD", str(c.id))}
        assert _found(matcher, codes[3]) == set()
        assert _found(matcher, FILE_CODES[3]) == set()
        assert _found(matcher, FILE_CODES[4]) == set()
        assert _found(matcher, FILE_CODES[5]) == {("FILE", "5")}

    check()
    _rebuild(index)
    assert matcher.reload()
    check()
    overlay = follower.current_overlay()
    assert overlay is not None and overlay.size() == 0  # all of it is in the version now
    # changes after the fold act on the published entries at once
    writer.set_disabled_until("MOD", c.id, 0)
    writer.set_disabled_until("MOD", a.id, 1)
    assert _found(matcher, codes[2]) == set()
    assert _found(matcher, codes[0]) == {("MOD", str(a.id))}
    writer.drop_bank("MOD")
    assert _found(matcher, codes[0]) == set()


def test_a_future_disable_until_ts_matches_once_it_comes(
    index: Path, live: tuple[Matcher, BankWriter, BankFollower]
) -> None:
    matcher, writer, follower = live
    writer.create_bank("MOD")
    code = random_codes(1, seed=51)[0]
    later = int(time.time()) + 3600
    entry = writer.add("MOD", [NewContent({"pdq": _hex(code)}, disable_until_ts=later)])[0]
    assert _found(matcher, code) == set()
    matcher.lookup({"pdq": _hex(code)})
    overlay = follower.current_overlay()
    assert overlay is not None
    assert overlay.apply_due(now=later + 1)  # the hour has come (a clock given, not waited)
    assert _found(matcher, code) == {("MOD", str(entry.id))}


def test_a_reader_in_another_process_sees_an_add_at_its_next_lookup(index: Path) -> None:
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                from hashmatch import Matcher
                from hashmatch.banks import BankFollower
                matcher = Matcher.open(sys.argv[1], banks=BankFollower(sys.argv[1] + "/banks"))
                for line in sys.stdin:
                    found = matcher.lookup({"pdq": line.strip()}, dihedral=False)
                    print(",".join(m.list + ":" + str(m.entry_id) for m in found), flush=True)
                """
            ),
            str(index),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdin is not None and reader.stdout is not None
    code = _hex(random_codes(1, seed=61)[0])
    try:
        reader.stdin.write(code + "\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == ""
        with BankWriter(index / "banks") as writer:
            writer.create_bank("MOD")
            entry = writer.add("MOD", [NewContent({"pdq": code})])[0]
        reader.stdin.write(code + "\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == f"MOD:{entry.id}"
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)


def test_a_config_with_banks_folds_them_and_their_exclusions(index: Path, tmp_path: Path) -> None:
    listed = tmp_path / "file.txt"
    listed.write_text("".join(f"pdq {_hex(c)} {i}\n" for i, c in enumerate(FILE_CODES)))
    config = tmp_path / "lists.toml"
    config.write_text(f'[banks]\n\n[[lists]]\nname = "FILE"\npath = "{listed.name}"\n')
    with BankWriter(index / "banks") as writer:
        writer.create_bank("MOD")
        added = writer.add("MOD", [NewContent({"pdq": _hex(random_codes(1, seed=71)[0])})])
        writer.exclude("MOD", [("hash", "pdq", _hex(FILE_CODES[0]))])
    sources, options = config_sources(load_config(config), index)
    report = build_index(sources, index, options)
    assert [item["name"] for item in report.lists] == ["FILE", "MOD"]
    assert report.lists[0]["excluded"] == 1
    matcher = Matcher.open(index)  # no follower: the version itself holds them
    assert _found(matcher, added[0].signals["pdq"]) == {("MOD", str(added[0].id))}
    assert _found(matcher, FILE_CODES[0]) == set()


_FIRST_LOOKUPS = textwrap.dedent(
    """
    import sys, threading
    from hashmatch import Matcher
    from hashmatch.banks import BankFollower, NewContent

    index, known, fresh = sys.argv[1], sys.argv[2], sys.argv[3]
    follower = BankFollower(index + "/banks")
    matcher = Matcher.open(index, banks=follower)
    writer = None
    errors = []
    start = threading.Barrier(16)

    def look(number):
        try:
            start.wait()
            for _ in range(5):
                matches = matcher.lookup({"pdq": known}, dihedral=False)
                found = {(m.list, m.entry_id) for m in matches}
                if ("MOD", "1") not in found:
                    errors.append(f"thread {number}: {found}")
        except Exception as exc:
            errors.append(repr(exc))

    def add():
        try:
            start.wait()
            with follower.writer() as writer:
                writer.add("MOD", [NewContent({"pdq": fresh})])
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=look, args=(n,)) for n in range(15)]
    threads.append(threading.Thread(target=add))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = {m.list for m in matcher.lookup({"pdq": fresh}, dihedral=False)}
    if found != {"MOD"}:
        errors.append(f"the add is not matchable: {found}")
    if len(follower._overlays) != 1:
        errors.append(f"{len(follower._overlays)} overlays made for one version")
    print("\\n".join(errors) or "ok")
    """
)


def test_sixteen_threads_first_lookups_on_banks_race_safely_with_an_add(index: Path) -> None:
    known = random_codes(1, seed=81)[0]
    with BankWriter(index / "banks") as writer:
        writer.create_bank("MOD")
        assert writer.add("MOD", [NewContent({"pdq": _hex(known)})])[0].id == 1
    for run in range(4):  # a fresh interpreter each time: only first uses race
        fresh = _hex(random_codes(1, seed=100 + run)[0])
        result = subprocess.run(
            [sys.executable, "-c", _FIRST_LOOKUPS, str(index), _hex(known), fresh],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.stdout.strip() == "ok", result.stdout + result.stderr


def test_without_the_change_hint_the_poll_reads_the_logs(index: Path) -> None:
    """A file system whose ``.changes`` hint lags (or a writer elsewhere that bumps none):
    the follower's own polling reads the new records."""
    from hashmatch.banks.log import append_lines
    from hashmatch.fixtures.service import wait_until

    with BankWriter(index / "banks") as writer:
        writer.create_bank("MOD")
    follower = BankFollower(index / "banks", poll_interval=0.2)
    matcher = Matcher.open(index, banks=follower)
    code = _hex(random_codes(1, seed=83)[0])
    assert _found(matcher, code) == set()
    record = BankRecord("add", 2, time.time(), "elsewhere", {"id": 5, "signals": {"pdq": code}})
    append_lines(index / "banks" / "MOD.log", encode_line(record))
    assert _found(matcher, code) == set()  # the hint did not move: not yet read
    follower.start()
    try:
        wait_until("the poll reading the log", lambda: _found(matcher, code) == {("MOD", "5")}, 60)
    finally:
        follower.close()


def test_adds_from_threads_racing_a_fast_poll_get_distinct_ids_and_keep_their_hashes(
    index: Path,
) -> None:
    """A follower's poll reading the log between a writer's append and its fold once made
    the writer skip later records and hand out ids already taken."""
    from concurrent.futures import ThreadPoolExecutor

    follower = BankFollower(index / "banks", poll_interval=0.001).start()
    codes = [_hex(c) for c in random_codes(400, seed=87)]
    try:
        with follower.writer() as writer, BankWriter(index / "banks", shared_lock=True) as other:
            writer.create_bank("MOD")
            # two writers of one instance (its server processes), each its own directory view
            pairs = list(zip(range(400), [writer, other] * 200, strict=True))
            with ThreadPoolExecutor(8) as pool:
                ids = list(
                    pool.map(
                        lambda p: p[1].add("MOD", [NewContent({"pdq": codes[p[0]]})])[0].id, pairs
                    )
                )
    finally:
        follower.close()
    assert len(set(ids)) == 400
    directory = BankDirectory(index / "banks")
    directory.refresh()
    entries = directory.bank("MOD").entries
    assert [entries[i].signals["pdq"] for i in ids] == codes


def test_a_bank_of_100000_contents_is_still_searched_exactly(index: Path) -> None:
    """At the size faiss's scan takes over from numpy's (the overlay's two paths agree)."""
    rng = np.random.default_rng(89)
    noise = random_codes(100_000, seed=88)
    queries = random_codes(4, seed=90)
    planted = [flip_bits(q, d, rng) for q in queries for d in (0, 15, 31, 32)]
    codes = np.concatenate([noise, np.stack(planted)])
    with BankWriter(index / "banks") as writer:
        writer.create_bank("BIG")
        for start in range(0, len(codes), 20_000):
            chunk = codes[start : start + 20_000]
            writer.add("BIG", [NewContent({"pdq": _hex(c)}) for c in chunk])
    matcher = Matcher.open(index, banks=BankFollower(index / "banks"))
    for query in queries:
        distances = np.bitwise_count(codes ^ query).sum(axis=1)
        expected = {str(i + 1) for i in np.flatnonzero(distances <= 31).tolist()}
        assert {
            m.entry_id for m in matcher.lookup({"pdq": _hex(query)}, dihedral=False)
        } == expected
        assert len(expected) >= 3  # the planted 0, 15 and 31; 32 is out
