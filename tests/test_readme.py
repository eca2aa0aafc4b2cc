"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hashmatch import ListSource, build_index, hash_image
from hashmatch.fixtures.hashlists import SyntheticEntry, write_list
from hashmatch.fixtures.hostile import encode
from hashmatch.fixtures.images import synthetic_photo
from hashmatch.index.evaluation.transforms import apply_transform

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_pipeline_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    known = synthetic_photo(70, (640, 480))
    entry = SyntheticEntry("pdq", hash_image(known)["pdq"].hex, "case-70", "known", "ncmec")
    build_index(
        [ListSource(write_list(tmp_path / "known.csv", [entry], "csv"))], tmp_path / "index"
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_python_block_after("### 5. Use the library"), "README.md", "exec"), namespace)
    allow_upload = namespace["allow_upload"]
    try:
        assert allow_upload(encode(apply_transform("resize_0.5", known), "JPEG")) is False
        assert "known image: ncmec/case-70 (pdq," in capsys.readouterr().out
        assert allow_upload(encode(synthetic_photo(71, (640, 480)), "JPEG")) is True
        assert allow_upload(b"not an image") is True
    finally:
        namespace["matcher"].close()


def test_build_from_memory_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    feed = SyntheticEntry("pdq", hash_image(synthetic_photo(72))["pdq"].hex, "feed-1")
    write_list(tmp_path / "clearinghouse.csv", [feed], "csv")
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_block_after("### 6. Build an index"), "README.md", "exec"), {})
    assert "moderators" in capsys.readouterr().out
    from hashmatch import Matcher

    with Matcher.open(tmp_path / "index") as matcher:
        case = matcher.lookup({"md5": "0a1b2c3d4e5f60718293a4b5c6d7e8f9"})
        assert [(m.list, m.entry_id, m.label) for m in case] == [
            ("moderators", "case-1", "reviewed")
        ]
        assert matcher.threshold("pdq") == 28
        assert [m.entry_id for m in matcher.match(synthetic_photo(72)).matches] == ["feed-1"]


def test_the_serving_configuration_table_lists_every_setting() -> None:
    from hashmatch.service.config import SETTINGS, environment_variable

    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Configuration") :]
    section = section[: section.index("\n### ", 5)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    variables = {re.findall(r"`(HASHMATCH_[A-Z_]+)`", row)[0] for row in rows}
    assert variables == {environment_variable(name) for name in SETTINGS}


def test_client_example(tmp_path: Path, capsys) -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from hashmatch.fixtures.service import known_index, serving_in_thread
    from hashmatch.service.config import ServiceConfig

    known = known_index(tmp_path)
    (tmp_path / "tokens.txt").write_text("readme 0123456789abcdef0123\n")
    config = ServiceConfig(index=known.path, token_file=tmp_path / "tokens.txt")
    with serving_in_thread(config) as base_url:
        block = _python_block_after("The Python client returns").replace(
            "http://127.0.0.1:5100", base_url
        )
        namespace = {"token": "0123456789abcdef0123", "upload_bytes": known.photos[1]}
        exec(compile(block, "README.md", "exec"), namespace)
    assert "[('KNOWN', '2', 0)" in capsys.readouterr().out
