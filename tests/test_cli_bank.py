"""``hashmatch bank ...`` and banks in ``hashmatch index build``, end to end through the CLI.

The library's behaviour (logs, the lock, the overlay) is pinned in ``test_banks.py``; these pin
what the commands make of it: outputs, exit codes, messages, and a build a lookup can see.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from hashmatch.cli.app import app
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.images import save_image, synthetic_photo

runner = CliRunner()
CODES = [c.tobytes().hex() for c in random_codes(40, seed=57)]
FILE_CODES = [c.tobytes().hex() for c in random_codes(200, seed=58)]


def _run(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _records(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _bank(banks: Path, *args: str | Path) -> Result:
    """``hashmatch bank ARGS --banks BANKS -f jsonl``."""
    return _run("bank", *args, "--banks", banks, "-f", "jsonl")


@pytest.fixture
def banks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("USER", "tester")
    path = tmp_path / "banks"
    created = _bank(path, "create", "MODS")
    assert created.exit_code == 0, created.output
    return path


def test_create_add_list_disable_enable_delete_exclude_and_log(banks: Path) -> None:
    added = _bank(banks, "add", "MODS", CODES[0], f"pdq:{CODES[1]}", "--note", "two")
    assert added.exit_code == 0, added.output
    first, second = (r["id"] for r in _records(added))
    assert _records(added)[1] == {
        "id": second,
        "signals": {"pdq": CODES[1]},
        "note": "two",
        "source": None,
    }

    listed = _records(_bank(banks, "list"))
    assert [(b["name"], b["ratio"], b["contents"], b["records"]) for b in listed] == [
        ("MODS", 1.0, 2, 3)
    ]

    until = time.time() + 3600
    disabled = _bank(banks, "disable", "MODS", str(first), "--until", str(until), "--by", "alice")
    assert disabled.exit_code == 0, disabled.output
    assert _records(disabled)[0]["state"].startswith("disabled until 20")
    assert _records(_bank(banks, "enable", "MODS", str(first)))[0]["state"] == "enabled"
    assert _records(_bank(banks, "disable", "MODS", str(first)))[0]["state"] == "disabled"

    deleted = _bank(banks, "delete", "MODS", str(second))
    assert _records(deleted) == [{"id": second, "deleted": 1}]
    again = _bank(banks, "delete", "MODS", str(second))
    assert again.exit_code == 2 and f"content '{second}' not found" in again.stderr

    excluded = _bank(
        banks, "exclude", "MODS", "--hash", f"PDQ:{CODES[2].upper()}", "--entry", "known:k7"
    )
    assert _records(excluded) == [
        {"kind": "hash", "key": f"pdq:{CODES[2]}", "excluded": True},
        {"kind": "entry", "key": "known:k7", "excluded": True},
    ]
    lifted = _bank(banks, "exclude", "MODS", "--entry", "known:k7", "--remove")
    assert _records(lifted) == [{"kind": "entry", "key": "known:k7", "excluded": False}]

    contents = _records(_bank(banks, "list", "MODS"))
    assert [(c["id"], c["state"], c["added_by"]) for c in contents] == [
        (first, "disabled", "cli:tester")
    ]
    every = _records(_bank(banks, "list", "MODS", "--all"))
    assert [(c["id"], c["state"]) for c in every] == [(first, "disabled"), (second, "deleted")]
    assert _records(_bank(banks, "list"))[0]["exclusions"] == 1

    log = _bank(banks, "log", "MODS")
    assert log.exit_code == 0, log.output
    trail = _records(log)
    assert [r["op"] for r in trail] == [
        "create", "add", "add", "set", "set", "set", "delete", "exclude", "exclude", "include"
    ]  # fmt: skip
    assert [r["seq"] for r in trail] == list(range(1, 11))
    assert trail[3]["by"] == "alice" and trail[4]["by"] == "cli:tester"
    assert trail[1]["fields"] == {"id": first, "note": "two", "signals": {"pdq": CODES[0]}}
    assert trail[0]["time"].endswith("Z") and trail[0]["time"][:2] == "20"
    page = _records(_bank(banks, "log", "MODS", "--after", "3", "--limit", "2"))
    assert [r["seq"] for r in page] == [4, 5]


def test_every_bank_command_needs_one_bank_directory(tmp_path: Path, banks: Path) -> None:
    neither = _run("bank", "list")
    both = _run("bank", "list", "--index", tmp_path, "--banks", banks)
    assert neither.exit_code == both.exit_code == 2
    assert "--index INDEX" in neither.output
    index = tmp_path / "idx"
    assert _run("bank", "create", "HERE", "--index", index).exit_code == 0
    assert (index / "banks" / "HERE.log").is_file()  # the index's own banks/ directory
    missing = _run("bank", "list", "--banks", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "no bank directory" in missing.stderr


def test_refusals_are_one_error_line_and_change_nothing(banks: Path) -> None:
    bad = _bank(banks, "add", "MODS", CODES[3], "00ff")
    assert bad.exit_code == 2 and "'00ff': pdq hash must be 64 hex digits" in bad.stderr
    assert _records(_bank(banks, "list"))[0]["contents"] == 0  # one bad hash adds nothing
    assert "Bank already exists" in _bank(banks, "create", "MODS").stderr
    assert "UPPER_WITH_UNDERSCORE" in _bank(banks, "create", "lower").stderr
    assert "bank 'OTHER' not found" in _bank(banks, "add", "OTHER", CODES[3]).stderr
    past = _bank(banks, "disable", "MODS", "1", "--until", "2001-01-01T00:00Z")
    assert past.exit_code == 2 and "not in the future" in past.output
    ids = [r["id"] for r in _records(_bank(banks, "add", "MODS", CODES[4]))]
    unknown = _bank(banks, "disable", "MODS", str(ids[0]), "999")
    assert unknown.exit_code == 2 and "content '999' not found" in unknown.stderr
    assert _records(_bank(banks, "list", "MODS"))[0]["state"] == "enabled"  # all or nothing


def test_ratio_is_set_on_create_and_on_an_existing_bank(banks: Path) -> None:
    created = _records(_bank(banks, "create", "HALF", "--ratio", "0.5"))
    assert created[0]["ratio"] == 0.5
    updated = _bank(banks, "create", "HALF", "--ratio", "0.25")
    assert updated.exit_code == 0 and _records(updated)[0]["ratio"] == 0.25
    assert "between 0 and 1" in _bank(banks, "create", "MORE", "--ratio", "2").stderr


def test_dropping_a_bank_asks_for_yes(banks: Path) -> None:
    _bank(banks, "add", "MODS", CODES[5], CODES[6])
    refused = _bank(banks, "delete", "MODS", "--bank")
    assert refused.exit_code == 2 and "deletes its 2 contents: add --yes" in refused.stderr
    assert _records(_bank(banks, "list"))[0]["name"] == "MODS"
    dropped = _bank(banks, "delete", "MODS", "--bank", "--yes")
    assert _records(dropped) == [{"bank": "MODS", "dropped": True, "contents": 2}]
    assert _records(_bank(banks, "list")) == []
    assert [r["op"] for r in _records(_bank(banks, "log", "MODS"))][-1] == "drop"


# -- the writer lock ------------------------------------------------------------------------

_HOLD_LOCK = textwrap.dedent(
    """
    import sys
    from hashmatch.banks import BankWriter
    writer = BankWriter(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_add_while_another_process_writes_exits_2_naming_it(banks: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(banks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], 120)
        assert ready and holder.stdout.readline().strip() == "locked"
        refused = _bank(banks, "add", "MODS", CODES[7])
        assert refused.exit_code == 2
        [message] = refused.stderr.strip().splitlines()
        assert message.startswith("error: ") and "another process writes" in message
        assert f"pid {holder.pid}" in message
        listed = _bank(banks, "list")  # readers take no lock
        assert listed.exit_code == 0 and _records(listed)[0]["contents"] == 0
        assert _bank(banks, "log", "MODS").exit_code == 0
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert _bank(banks, "add", "MODS", CODES[7]).exit_code == 0  # the lock went with it


# -- adding a list file and images ----------------------------------------------------------


@pytest.fixture
def listing(tmp_path: Path) -> Path:
    entries = [
        SyntheticEntry("pdq", h, f"k{i}", f"label {i}") for i, h in enumerate(FILE_CODES[:150])
    ]
    path = write_list(tmp_path / "known.csv", entries, "csv")
    with open(path, "a") as file:
        file.write("pdq,00ff,broken,short,\n")  # line 152
    return path


def test_add_file_skips_a_bad_line_by_number_and_adds_the_rest(banks: Path, listing: Path) -> None:
    added = _bank(banks, "add", "MODS", "--file", listing)
    assert added.exit_code == 0, added.output
    assert f"skipped {listing}:152: pdq hash must be 64 hex digits, got 4" in added.stderr
    records = _records(added)
    assert len(records) == 150 and len({r["id"] for r in records}) == 150
    assert records[0]["source"] == f"{listing}:2" and records[0]["note"] == "label 0"
    assert records[149]["signals"] == {"pdq": FILE_CODES[149]}
    [content] = [c for c in _records(_bank(banks, "list", "MODS")) if c["id"] == records[3]["id"]]
    assert content["metadata"] == {"source_id": "k3"}


def test_add_file_strict_adds_nothing_on_one_bad_line(banks: Path, listing: Path) -> None:
    refused = _bank(banks, "add", "MODS", "--file", listing, "--strict")
    assert refused.exit_code == 2 and f"{listing}:152:" in refused.stderr
    assert refused.stdout == ""
    assert _records(_bank(banks, "list"))[0]["contents"] == 0


def test_add_file_of_too_many_bad_lines_adds_nothing(banks: Path, tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text(f"pdq {FILE_CODES[0]}\npdq 12345\n")
    refused = _bank(banks, "add", "MODS", "--file", path)
    assert refused.exit_code == 2 and "1 of 2 hashes invalid" in refused.stderr
    assert _records(_bank(banks, "list"))[0]["contents"] == 0
    allowed = _bank(banks, "add", "MODS", "--file", path, "--max-invalid", "50%")
    assert allowed.exit_code == 0 and len(_records(allowed)) == 1


def test_add_from_image_adds_its_hash_and_refuses_a_flat_image(banks: Path, tmp_path: Path) -> None:
    photo = save_image(synthetic_photo(3), tmp_path / "photo.png")
    flat = save_image(Image.new("RGB", (200, 200), (128, 128, 128)), tmp_path / "flat.png")
    refused = _bank(banks, "add", "MODS", "--from-image", photo, flat)
    assert refused.exit_code == 2
    assert f"{flat}: too flat to match reliably (PDQ quality" in refused.stderr
    assert "nothing added" in refused.stderr
    assert _records(_bank(banks, "list"))[0]["contents"] == 0
    added = _bank(banks, "add", "MODS", "--from-image", photo, "--note", "a photo")
    assert added.exit_code == 0, added.output
    [record] = _records(added)
    assert record["source"] == str(photo) and len(record["signals"]["pdq"]) == 64


# -- banks in builds ------------------------------------------------------------------------


def _lookup(index: Path, code: str) -> list[dict[str, Any]]:
    result = _run("lookup", index, f"pdq:{code}", "-f", "jsonl")
    assert result.exit_code in (0, 1), result.output
    matches: list[dict[str, Any]] = _records(result)[0]["matches"]
    assert (result.exit_code == 1) == bool(matches)
    return matches


def test_build_with_a_banks_section_folds_banks_and_their_exclusions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "tester")
    index = tmp_path / "idx"
    lists = tmp_path / "lists"
    lists.mkdir()
    entries = [SyntheticEntry("pdq", h, f"k{i}") for i, h in enumerate(FILE_CODES[:20])]
    write_list(lists / "known.csv", entries, "csv")
    config = tmp_path / "lists.toml"
    config.write_text('[[lists]]\npath = "lists/known.csv"\n\n[banks]\nnames = ["MODS"]\n')

    def bank(*args: str) -> Result:
        result = _run("bank", *args, "--index", index, "-f", "jsonl")
        assert result.exit_code == 0, result.output
        return result

    bank("create", "MODS")
    kept, disabled, deleted = (r["id"] for r in _records(bank("add", "MODS", *CODES[10:13])))
    bank("disable", "MODS", str(disabled))
    bank("delete", "MODS", str(deleted))
    bank("exclude", "MODS", "--hash", FILE_CODES[0], "--entry", "known:k1")

    built = _run("index", "build", "--config", config, "-o", index)
    assert built.exit_code == 0, built.output
    assert "list known (" in built.stdout and "excluded 2" in built.stdout
    assert "list MODS (<MODS>, entries): accepted pdq 1; rejected 0" in built.stdout

    [match] = _lookup(index, CODES[10])
    assert (match["list"], match["entry_id"], match["distance"]) == ("MODS", str(kept), 0)
    assert _lookup(index, CODES[11]) == [] and _lookup(index, CODES[12]) == []
    assert _lookup(index, FILE_CODES[0]) == [] and _lookup(index, FILE_CODES[1]) == []
    assert _lookup(index, FILE_CODES[2])[0]["entry_id"] == "k2"


def test_build_with_the_banks_option_and_no_config(banks: Path, tmp_path: Path) -> None:
    [added] = _records(_bank(banks, "add", "MODS", CODES[20]))
    _bank(banks, "create", "OTHERS")
    _bank(banks, "add", "OTHERS", CODES[21])
    _bank(banks, "exclude", "OTHERS", "--hash", FILE_CODES[5])
    listing = write_list(
        tmp_path / "known.csv", [SyntheticEntry("pdq", h) for h in FILE_CODES[5:10]], "csv"
    )
    index = tmp_path / "idx"
    built = _run("index", "build", listing, "--banks", banks, "-o", index)
    assert built.exit_code == 0, built.output
    assert "list MODS (<MODS>, entries): accepted pdq 1" in built.stdout
    assert "list OTHERS (<OTHERS>, entries): accepted pdq 1" in built.stdout
    assert _lookup(index, CODES[20])[0]["entry_id"] == str(added["id"])
    assert _lookup(index, CODES[21])[0]["list"] == "OTHERS"
    assert _lookup(index, FILE_CODES[5]) == [] and _lookup(index, FILE_CODES[6])
    missing = _run("index", "build", "--banks", tmp_path / "nowhere", "-o", index)
    assert missing.exit_code == 2 and "nowhere: no bank directory" in missing.stderr


# -- a damaged log ----------------------------------------------------------------------------


def test_log_reports_a_corrupt_line_by_number_and_prints_the_rest(banks: Path) -> None:
    _bank(banks, "add", "MODS", CODES[30])
    _bank(banks, "add", "MODS", CODES[31])
    path = banks / "MODS.log"
    data = bytearray(path.read_bytes())
    lines = data.split(b"\n")
    assert len(lines) == 4 and lines[-1] == b""  # create, add, add
    middle = len(lines[0]) + 1 + len(lines[1]) // 2  # a byte in the middle of line 2
    data[middle] ^= 0x01
    path.write_bytes(bytes(data))

    log = _bank(banks, "log", "MODS")
    assert log.exit_code == 1
    assert [r["seq"] for r in _records(log)] == [1, 3]
    assert f"{path}:2: checksum mismatch" in log.stderr
    assert log.stderr.count("checksum mismatch") == 1  # reported once, not again by the logger
    listed = _bank(banks, "list", "MODS")
    assert listed.exit_code == 1 and f"{path}:2:" in listed.stderr
    assert [c["signals"]["pdq"] for c in _records(listed)] == [CODES[31]]


def test_lookup_and_scan_find_what_was_added_since_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No rebuild in between: the commands search the index's own banks beside it."""
    monkeypatch.setenv("USER", "tester")
    index = tmp_path / "idx"
    listing = tmp_path / "known.csv"
    write_list(listing, [SyntheticEntry("pdq", FILE_CODES[0], "k0")], "csv")
    assert _run("index", "build", listing, "-o", index, "-q").exit_code == 0
    photo = tmp_path / "photos" / "reported.jpg"
    photo.parent.mkdir()
    save_image(synthetic_photo(7, (320, 240)), photo)
    assert _run("bank", "create", "MODS", "--index", index).exit_code == 0
    added = _records(_run("bank", "add", "MODS", CODES[20], "--index", index, "-f", "jsonl"))
    assert [m["entry_id"] for m in _lookup(index, CODES[20])] == [str(added[0]["id"])]
    assert _run("bank", "add", "MODS", "--from-image", photo, "--index", index).exit_code == 0
    scanned = _run("scan", photo.parent, "--index", index, "-f", "jsonl", "--workers", "1")
    assert scanned.exit_code == 1, scanned.output  # 1: a match
    [record] = _records(scanned)
    assert record["status"] == "match" and record["matches"][0]["list"] == "MODS"
    assert _run("bank", "disable", "MODS", str(added[0]["id"]), "--index", index).exit_code == 0
    assert _lookup(index, CODES[20]) == []
