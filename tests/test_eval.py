"""``hashmatch eval`` end to end on a handful of synthetic images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hashmatch.cli.app import app
from hashmatch.fixtures.images import save_image, synthetic_photo
from hashmatch.index.evaluation import (
    DEFAULT_EVAL_MATCHING,
    EvalOptions,
    evaluate,
    recall_curve,
    write_report,
)

TRANSFORMS = ("noop", "jpeg_q50", "flip_horizontal", "pad_20pct_white", "crop_5pct")


def _options(transforms: tuple[str, ...], algorithms: tuple[str, ...], **switches) -> EvalOptions:
    """The evaluation's defaults (as a scan matches), for these transforms and algorithms."""
    matching = DEFAULT_EVAL_MATCHING.with_switches(algorithms=algorithms, **switches)
    return EvalOptions(transforms=transforms, matching=matching)


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("known")
    sizes = [(640, 480), (480, 640), (500, 500), (800, 450)]
    return [
        str(save_image(synthetic_photo(seed, size), folder / f"photo{seed}.png"))
        for seed, size in enumerate(sizes, start=60)
    ]


@pytest.fixture(scope="module")
def distractors(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("others")
    return [
        str(save_image(synthetic_photo(seed), folder / f"other{seed}.jpg"))
        for seed in range(80, 83)
    ]


def test_recall_and_false_pairs(known: list[str], distractors: list[str]) -> None:
    options = _options(TRANSFORMS, ("pdq", "phash"))
    result = evaluate(known, options, distractors=distractors)
    pdq, phash = result.scores["pdq"], result.scores["phash"]
    assert pdq["noop"].recall == 1.0 and pdq["noop"].histogram[0] == len(known)
    assert pdq["jpeg_q50"].recall == 1.0
    assert pdq["flip_horizontal"].recall == 1.0  # dihedral variants are on by default
    assert phash["flip_horizontal"].recall < 1.0  # the 64-bit hashes have no variants
    assert pdq["pad_20pct_white"].recall == 1.0  # border trimming is on by default
    assert pdq["crop_5pct"].recall == 1.0  # crop recovery is on by default
    assert all(score.total == len(known) and score.wrong == 0 for score in pdq.values())
    # every known image and distractor against every other known image
    assert result.false_pairs == len(known) * (len(known) - 1) + len(distractors) * len(known)
    assert result.false_matches == {"pdq": 0, "phash": 0}
    assert int(result.false_histograms["pdq"].sum()) == result.false_pairs
    assert result.thresholds == {"pdq": 31, "phash": 10}
    curve = list(recall_curve(result, "pdq"))
    assert curve[0][0] == 0 and curve[-1][1:] == (1.0, 1.0)
    recalls = [recall for _, recall, _ in curve]
    assert recalls == sorted(recalls)


def test_flips_need_dihedral_matching(known: list[str]) -> None:
    options = _options(("noop", "flip_horizontal"), ("pdq",), dihedral=False)
    result = evaluate(known, options)
    assert result.scores["pdq"]["noop"].recall == 1.0
    assert result.scores["pdq"]["flip_horizontal"].recall == 0.0


def test_bad_images_are_reported_not_fatal(known: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = evaluate([*known[:2], str(broken)], _options(("noop",), ("pdq",)))
    assert result.images == known[:2]
    assert list(result.failed) == [str(broken)] and "decode" in result.failed[str(broken)]


def test_report_files(known: list[str], tmp_path: Path) -> None:
    result = evaluate(known, _options(TRANSFORMS, ("pdq",)))
    written = {path.name for path in write_report(result, tmp_path / "report")}
    assert {"results.json", "report.md"} <= written
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    noop = data["algorithms"]["pdq"]["transforms"]["noop"]
    assert (noop["recall"], noop["found"], noop["total"]) == (1.0, 4, 4)
    assert data["algorithms"]["pdq"]["false_pairs"]["matched"] == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| crop_5pct | 100.0%" in report
    pytest.importorskip("matplotlib", reason="plots need the 'eval' extra")
    assert {"recall.png", "distances-pdq.png", "curves.png"} <= written
    assert (tmp_path / "report" / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_cli(known: list[str], tmp_path: Path) -> None:
    runner = CliRunner()
    folder = str(Path(known[0]).parent)
    args = ["eval", folder, "-o", str(tmp_path / "out"), "-t", "noop,rotate_90", "-a", "pdq"]
    outcome = runner.invoke(app, [*args, "--workers", "1", "--quiet"])
    assert outcome.exit_code == 0, outcome.output
    assert "rotate_90" in outcome.stdout and "100.0%" in outcome.stdout
    assert (tmp_path / "out" / "report.md").is_file()
    bad = runner.invoke(app, [*args[:-4], "-t", "noop,swirl"])
    assert bad.exit_code == 2 and "swirl" in bad.output
    exact = runner.invoke(app, [*args[:-2], "-a", "md5", "--quiet"])
    assert exact.exit_code == 2 and "perceptual" in exact.output
