"""Walking directories: content sniffing, recursion, symlinks, problems as entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hashmatch.fixtures.hostile import encode
from hashmatch.walking import walk_images


@pytest.fixture
def tree(tmp_path: Path, photo) -> Path:
    jpeg = encode(photo.resize((64, 48)), "JPEG")
    (tmp_path / "a.jpg").write_bytes(jpeg)
    (tmp_path / "renamed.dat").write_bytes(encode(photo.resize((64, 48)), "PNG"))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"garbage that is not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.webp").write_bytes(encode(photo.resize((64, 48)), "WEBP"))
    (sub / "deeper").mkdir()
    (sub / "deeper" / "c.gif").write_bytes(encode(photo.resize((64, 48)), "GIF"))
    return tmp_path


def _names(entries) -> dict[str, str | None]:
    return {Path(e.path).name: e.error or e.skipped for e in entries}


def test_images_are_found_by_content_and_files_named_as_images_are_kept(tree: Path) -> None:
    found = _names(walk_images([tree]))
    assert found == {
        "a.jpg": None,
        "broken.jpg": None,  # named like an image: processed, and the loader reports it
        "empty.png": None,
        "notes.txt": "not an image",
        "renamed.dat": None,
    }


def test_recursive_walk_descends_in_sorted_order(tree: Path) -> None:
    images = [e.path for e in walk_images([tree], recursive=True) if e.is_image]
    assert [Path(p).name for p in images] == [
        "a.jpg",
        "broken.jpg",
        "empty.png",
        "renamed.dat",
        "b.webp",
        "c.gif",
    ]


def test_symlinks_inside_directories_are_skipped_unless_followed(tree: Path) -> None:
    (tree / "link.jpg").symlink_to(tree / "a.jpg")
    (tree / "sub" / "loop").symlink_to(tree)
    (tree / "dangling.jpg").symlink_to(tree / "missing.jpg")
    plain = _names(walk_images([tree], recursive=True))
    assert (
        plain["link.jpg"] == plain["loop"] == plain["dangling.jpg"] == "symbolic link not followed"
    )
    followed = list(walk_images([tree], recursive=True, follow_symlinks=True))
    names = _names(followed)
    assert names["link.jpg"] is None
    assert names["dangling.jpg"] == "broken symbolic link"
    assert names["loop"] == "directory already visited (symbolic link loop)"
    assert sum(1 for e in followed if Path(e.path).name == "a.jpg") == 1


def test_named_paths_are_always_visited_and_problems_reported(tree: Path) -> None:
    (tree / "dangling.jpg").symlink_to(tree / "missing.jpg")
    entries = list(walk_images([tree / "notes.txt", tree / "nope.jpg", tree / "dangling.jpg"]))
    assert [(Path(e.path).name, e.error) for e in entries] == [
        ("notes.txt", None),  # named explicitly: the loader says what is wrong with it
        ("nope.jpg", "no such file or directory"),
        ("dangling.jpg", "broken symbolic link"),
    ]


def test_fifo_in_a_directory_is_reported_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    assert _names(walk_images([tmp_path])) == {"pipe.jpg": "not a regular file"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root can list any directory")
def test_unreadable_directory_is_an_entry_not_a_crash(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        entries = list(walk_images([tmp_path], recursive=True))
    finally:
        locked.chmod(0o755)
    assert entries[0].error.startswith("cannot list directory")
