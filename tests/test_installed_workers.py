"""Worker processes import the package their parent imported, whatever the current directory.

A regular (non-editable) install run from the root of a checkout has a ``hashmatch/`` source
folder in the current directory. The test lays out such an install by hand (the package
folders where ``pip install .`` puts them, no editable finder), runs multi-worker ``hash`` and
``scan`` from a directory holding a copy of the ``hashmatch/`` source folder (importable, but
without the ``cli``, ``index`` and ``fixtures`` sub-packages the install maps in), and checks
every file is hashed: a worker that imported the copy fails on its first task.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from hashmatch.fixtures.images import save_image, synthetic_photo

PROJECT = Path(__file__).resolve().parents[1]


def _package_folders() -> dict[str, str]:
    """Source folder -> where an install puts it, from pyproject's ``package-dir``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    setup = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {source: name.replace(".", "/") for name, source in setup["package-dir"].items()}


PACKAGES = _package_folders()
CONSOLE_SCRIPT = (
    "import sys\n"
    "from hashmatch.cli.app import main\n"
    "if __name__ == '__main__':\n"
    "    sys.exit(main())\n"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(console script, checkout directory to run from, environment of the install)."""
    root = tmp_path_factory.mktemp("installed")
    site = root / "site"
    for source, target in PACKAGES.items():
        shutil.copytree(
            PROJECT / source, site / target, ignore=shutil.ignore_patterns("__pycache__")
        )
    script = root / "bin" / "hashmatch"
    script.parent.mkdir()
    script.write_text(CONSOLE_SCRIPT)
    checkout = root / "checkout"
    shutil.copytree(
        PROJECT / "hashmatch", checkout / "hashmatch", ignore=shutil.ignore_patterns("__pycache__")
    )
    # -S: no site processing, so no editable finder; the dependencies come from PYTHONPATH
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *dependencies])}
    (checkout / "photos").mkdir()
    for number in range(6):
        save_image(
            synthetic_photo(700 + number, (320, 240)), checkout / "photos" / f"p{number}.jpg"
        )
    return script, checkout, environment


def _run(
    installed: tuple[Path, Path, dict[str, str]], *arguments: str
) -> subprocess.CompletedProcess:
    script, checkout, environment = installed
    return subprocess.run(
        [sys.executable, "-S", str(script), *arguments],
        cwd=checkout,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_install_is_what_the_command_imports(installed) -> None:
    done = _run(installed, "--version")
    assert done.returncode == 0 and done.stdout.startswith("hashmatch "), done.stderr


def test_multi_worker_hash_and_scan_import_the_installed_package(installed) -> None:
    hashed = _run(installed, "hash", "photos", "-j", "2", "-a", "pdq,phash", "-f", "csv", "-o",
                  "known.csv")  # fmt: skip
    assert hashed.returncode == 0, hashed.stderr
    assert "Traceback" not in hashed.stderr
    built = _run(installed, "index", "build", "known.csv", "-o", "idx")
    assert built.returncode == 0, built.stderr
    scanned = _run(installed, "scan", "photos", "-i", "idx", "-j", "2", "-f", "jsonl")
    assert scanned.returncode == 1, scanned.stderr  # every photo is in the index it built
    records = [json.loads(line) for line in scanned.stdout.splitlines()]
    assert len(records) == 6 and {r["status"] for r in records} == {"match"}
