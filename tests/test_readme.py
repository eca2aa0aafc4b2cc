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
