"""``hashmatch serve``'s own refusals: what it says before it serves anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hashmatch.cli import serve_command
from hashmatch.cli.app import app
from hashmatch.fixtures.service import KnownIndex, known_index

WAIT = 120.0


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("cli"))


def test_without_the_serve_extra_it_says_what_to_install(
    known: KnownIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve_command, "_installed", lambda module: module != "fastapi")
    result = CliRunner().invoke(app, ["serve", str(known.path)])
    assert result.exit_code == 2
    assert "pip install 'hashmatch[serve]'" in result.output
    assert "missing: fastapi" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--reload-interval", "100", "--stale-after", "50"], "stale_after"),
        (["--hash-workers", "0"], "hash_workers"),
        (["--max-upload-bytes", "0"], "max_upload_bytes"),
        (["--log-level", "loud"], "log_level"),
        (["--port", "70000"], "port"),
    ],
)
def test_bad_settings_stop_it_before_it_binds(
    known: KnownIndex, arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["serve", str(known.path), *arguments])
    assert result.exit_code == 2
    assert message in result.output


def test_a_taken_port_is_a_clear_error(known: KnownIndex, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hashmatch.cli", "serve", str(known.path), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
