"""Live banks through ``hashmatch serve`` as real processes: every instance on a bank
directory matches what is added at once, one writing instance per directory, a writer
killed in the middle of concurrent adds, and the writer's own debounced rebuilds."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from hashmatch.banks import BankDirectory, BankWriter, NewContent  # noqa: E402
from hashmatch.errors import BankLockedError  # noqa: E402
from hashmatch.fixtures.hashlists import random_codes  # noqa: E402
from hashmatch.fixtures.service import (  # noqa: E402
    KnownIndex,
    known_index,
    serve_process,
    wait_until,
)

WAIT = 120.0


@pytest.fixture
def known(tmp_path: Path) -> KnownIndex:
    return known_index(tmp_path / "served")


def _raw(base_url: str, code: str) -> list[int]:
    answer = httpx.get(
        base_url + "/m/raw_lookup", params={"signal": code, "signal_type": "pdq"}, timeout=WAIT
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["matches"])


def test_two_reading_instances_match_an_add_at_their_next_lookup(
    known: KnownIndex, tmp_path: Path
) -> None:
    code = random_codes(1, seed=91)[0].tobytes().hex()
    with (
        serve_process(known.path, "--workers", "2", log_dir=tmp_path) as first,
        serve_process(
            known.path, "--workers", "1", "--bank-poll-interval", "0.5", log_dir=tmp_path
        ) as second,
    ):
        assert _raw(first.base_url, code) == [] and _raw(second.base_url, code) == []
        with BankWriter(known.path / "banks") as writer:  # a writer of its own: the CLI's way
            writer.create_bank("MOD")
            entry = writer.add("MOD", [NewContent({"pdq": code})])[0]
        # every lookup (on any server process) sees it: no wait at all on one machine
        for _ in range(4):
            assert _raw(first.base_url, code) == [entry.id]
            assert _raw(second.base_url, code) == [entry.id]
        lookup = httpx.get(
            second.base_url + "/m/lookup",
            params={"signal": code, "signal_type": "pdq"},
            timeout=WAIT,
        ).json()
        assert lookup == {"MOD": [{"bank_content_id": entry.id, "distance": "0"}]}
        with BankWriter(known.path / "banks") as writer:
            writer.set_disabled_until("MOD", entry.id, 0)
        assert _raw(first.base_url, code) == [] and _raw(second.base_url, code) == []


def test_one_writing_instance_per_bank_directory(known: KnownIndex, tmp_path: Path) -> None:
    with serve_process(known.path, "--bank-writer", log_dir=tmp_path) as writer:
        with pytest.raises(BankLockedError, match=f"pid {writer.process.pid}"):
            BankWriter(known.path / "banks")
        refused = pytest.raises(RuntimeError, match="another process writes these banks")
        with refused, serve_process(known.path, "--bank-writer", log_dir=tmp_path):
            pass
        # a reading instance starts beside it
        with serve_process(known.path, log_dir=tmp_path) as reader:
            assert _raw(reader.base_url, known.pdq[0]) == [1]
    with BankWriter(known.path / "banks") as free:  # the lock went with the server
        free.create_bank("AFTER")


def _add(client: httpx.Client, code: str) -> int:
    answer = client.post("/c/bank/MOD/signal", json={"pdq": code})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["id"])


def test_sigkill_of_the_writer_mid_adds_keeps_every_acknowledged_add(
    known: KnownIndex, tmp_path: Path
) -> None:
    codes = [c.tobytes().hex() for c in random_codes(1000, seed=93)]
    acknowledged: dict[int, int] = {}
    lock = threading.Lock()
    enough = threading.Event()
    with serve_process(known.path, "--bank-writer", "--workers", "2", log_dir=tmp_path) as served:
        httpx.post(served.base_url + "/c/banks", json={"name": "MOD"}, timeout=WAIT)

        def client(slot: int) -> None:
            with httpx.Client(base_url=served.base_url, timeout=WAIT) as http:
                for number in range(slot, 1000, 16):
                    try:
                        content = _add(http, codes[number])
                    except (httpx.HTTPError, AssertionError):
                        return  # the server is gone
                    with lock:
                        acknowledged[number] = content
                        if len(acknowledged) >= 300:
                            enough.set()

        threads = [threading.Thread(target=client, args=(slot,)) for slot in range(16)]
        for thread in threads:
            thread.start()
        assert enough.wait(WAIT)
        served.signal(signal.SIGKILL)  # the supervisor and its servers, mid-append
        for thread in threads:
            thread.join(WAIT)
    directory = BankDirectory(known.path / "banks")
    directory.refresh()
    assert not directory.problems  # no partial record is ever read
    entries = directory.bank("MOD").entries
    for number, content in acknowledged.items():
        assert entries[content].signals["pdq"] == codes[number]
    assert len(entries) < 1000
    with BankWriter(known.path / "banks") as writer:  # the next writer appends cleanly
        writer.add("MOD", [NewContent({"pdq": codes[999]})])
    directory.refresh()
    assert not directory.problems


def test_the_writer_folds_its_banks_into_new_versions_by_itself(
    known: KnownIndex, tmp_path: Path
) -> None:
    listing = tmp_path / "known.txt"
    listing.write_text("".join(f"pdq {code} {n}\n" for n, code in enumerate(known.pdq, 1)))
    config = tmp_path / "lists.toml"
    banks = known.path / "banks"
    config.write_text(
        f'[banks]\npath = "{banks}"\n\n[[lists]]\nname = "KNOWN"\npath = "{listing}"\n'
    )
    codes = [c.tobytes().hex() for c in random_codes(3, seed=95)]
    # after 3 records at once; a record or two that wait are folded within 2 s
    arguments = ["--bank-writer", "--rebuild-config", str(config), "--rebuild-after", "3"]
    arguments += ["--rebuild-every", "2"]
    arguments += ["--reload-interval", "1", "--bank-poll-interval", "0.2"]
    with (
        serve_process(known.path, *arguments, log_dir=tmp_path) as served,
        httpx.Client(base_url=served.base_url, timeout=WAIT) as http,
    ):
        first = http.get("/v1/index").json()["version"]
        assert http.post("/c/banks", json={"name": "MOD"}).status_code == 201
        ids = [_add(http, code) for code in codes[:2]]  # 3 records wait: create + 2 adds
        assert all(_raw(served.base_url, c) == [i] for c, i in zip(codes, ids, strict=False))
        wait_until("a rebuild", lambda: http.get("/v1/index").json()["version"] != first, WAIT)
        folded = http.get("/v1/index").json()["version"]
        assert all(_raw(served.base_url, c) == [i] for c, i in zip(codes, ids, strict=False))
        assert _raw(served.base_url, known.pdq[0]) == [1]  # the list files are still there
        http.put(f"/c/bank/MOD/content/{ids[0]}", json={"disable_until_ts": 0})
        assert _raw(served.base_url, codes[0]) == []  # at once, before any rebuild
        wait_until(
            "the disable folded in", lambda: http.get("/v1/index").json()["version"] != folded, WAIT
        )
        assert _raw(served.base_url, codes[0]) == []
        assert _raw(served.base_url, codes[1]) == [ids[1]]
