"""The fuzzing seed corpus and every failure the fuzzer found, replayed against the contract.

``bench/fuzz.py`` mutates these seeds for minutes; this replays them in seconds, so a
regression on any input that once broke the contract (only HashmatchError, bounded time, bad
list lines reported at lines the file has) fails the suite.
"""

from __future__ import annotations

import pytest

from hashmatch.fixtures.fuzz_seeds import (
    image_reproducers,
    image_seeds,
    list_reproducers,
    list_seeds,
)
from hashmatch.fixtures.fuzz_targets import (
    IMAGE_MODES,
    LIST_MODES,
    check_image,
    check_list,
    list_input,
    split_list_input,
)

pytestmark = [  # what Pillow says about broken and oversized files is not under test here
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

HANG_BOUND_SECONDS = 30.0
"""Only a hang fails the replay: the slowest input takes 0.14 s here (the first phash, which
imports scipy). ``bench/fuzz.py`` keeps the contract's own 2 s, measured on one machine."""

IMAGES = {**image_seeds(), **image_reproducers()}
LISTS = {**list_seeds(), **list_reproducers()}


@pytest.mark.parametrize("mode_index", range(len(IMAGE_MODES)), ids=[m for m, _ in IMAGE_MODES])
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_inputs_raise_only_hashmatch_errors_quickly(name: str, mode_index: int) -> None:
    failure = check_image(IMAGES[name], mode_index, slow_seconds=HANG_BOUND_SECONDS)
    assert failure is None, f"{failure.signature}\n{failure.detail}"


@pytest.mark.parametrize("algorithm", [None, "pdq", "md5"])
@pytest.mark.parametrize("mode", LIST_MODES)
@pytest.mark.parametrize("name", sorted(LISTS))
def test_list_inputs_report_bad_lines_and_raise_only_hashmatch_errors(
    name: str, mode: str, algorithm: str | None, tmp_path
) -> None:
    suffix, content = LISTS[name]
    data = list_input(suffix, content, algorithm, mode)
    failure = check_list(data, str(tmp_path), slow_seconds=HANG_BOUND_SECONDS)
    assert failure is None, f"{failure.signature}\n{failure.detail}"


def test_list_inputs_round_trip_through_their_selector_byte() -> None:
    data = list_input(".jsonl", b"{}", "md5", "exclusions")
    assert split_list_input(data) == (".jsonl", b"{}", "md5", "exclusions")


def test_the_corpus_covers_every_decodable_format_and_list_format() -> None:
    from hashmatch.formats import sniff_image_format

    formats = {sniff_image_format(data[:32]) for data in image_seeds().values()}
    assert {"JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "ICO", "PPM", "JPEG2000"} <= formats
    assert {suffix for suffix, _ in list_seeds().values()} == {".csv", ".tsv", ".txt", ".jsonl"}


def test_seeds_are_generated_deterministically() -> None:
    assert image_seeds() == image_seeds()
    assert list_seeds() == list_seeds()
