"""The package arrows of `.importlinter` hold, and a module that breaks one fails the check.

The violation tests run `lint-imports` on a copy of the packages with one offending module
added, so they prove the contracts catch what they claim without touching the checkout.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _root_packages() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser["importlinter"]["root_packages"].split()


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # The copy must shadow the editable install of the checkout: cwd first on the path.
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(cwd / ".importlinter")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_checkout_keeps_every_contract() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def packages_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root packages' Python files and the contracts, in a scratch folder."""
    dest = tmp_path_factory.mktemp("contracts")
    for package in _root_packages():
        shutil.copytree(
            ROOT / package,
            dest / package,
            ignore=lambda _dir, names: [
                n for n in names if not (n.endswith(".py") or (Path(_dir) / n).is_dir())
            ],
        )
    shutil.copy(CONFIG, dest / ".importlinter")
    return dest


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        # The service's lower layers must not reach up into the service.
        ("store/contract_probe.py", "import app.main\n", "store is not allowed to import app"),
        # The service never imports the training kit (the runtime image has no torch).
        ("app/contract_probe.py", "import model.train\n", "app is not allowed to import model"),
        ("artifact/contract_probe.py", "import torch\n", "artifact is not allowed to import torch"),
        # Siblings at the bottom stay independent of each other.
        (
            "index/contract_probe.py",
            "import store.records\n",
            "index is not allowed to import store",
        ),
        # The training kit does not import the service.
        ("model/contract_probe.py", "from app import main\n", "model is not allowed to import app"),
    ],
    ids=["store->app", "app->model", "artifact->torch", "index->store", "model->app"],
)
def test_a_forbidden_import_breaks_a_contract(
    packages_copy: Path, module: str, source: str, broken: str
) -> None:
    probe = packages_copy / module
    probe.write_text(source)
    try:
        done = _lint_imports(packages_copy)
    finally:
        probe.unlink()
    assert done.returncode != 0, done.stdout[-3000:]
    assert broken in done.stdout, done.stdout[-3000:]
