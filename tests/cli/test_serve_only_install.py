"""`pip install -e ".[serve]"` into a venv without the training kit is a real way in: the
console script serves the real model, enroll-folder fills it, and the kit commands say to
install the train extra. Nothing of the training kit is installed there.

The venv is the session's ``serve_venv`` (a fresh venv holding the serve lock file): the extra's
dependencies are then already there, so this install only adds the project — the same
environment a fresh ``.[serve]`` install gives, because ``tests/test_pyproject.py`` holds the
extra and the lock file to the same packages."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.run_cli import ROOT, serving
from tests.client.enroll_service import outcomes, write_files


@pytest.fixture
def serve_install(serve_venv: Path) -> Iterator[Path]:
    """``serve_venv`` with the project installed by ``pip install -e ".[serve]"``, for one
    test: uninstalled afterwards, so the runtime-stage test sees the lock file's packages only."""
    pip = [str(serve_venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "-e", f"{ROOT}[serve]"], check=True, timeout=600)
    yield serve_venv
    subprocess.run([*pip, "uninstall", "--quiet", "-y", "centroid-retrieval"], check=True)


@pytest.mark.slow
def test_a_serve_only_install_serves_and_enrolls_without_torch(
    default_model_path: Path,
    tmp_path: Path,
    photo_views: dict[str, list[bytes]],
    serve_install: Path,
) -> None:
    venv = serve_install
    script = str(venv / "bin" / "centroid-retrieval")
    kit = ("torch", "torchvision", "onnx", "skimage")
    probe = f"import importlib.util as u; print([m for m in {kit!r} if u.find_spec(m)])"
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout == "[]\n"

    # Run from an empty directory: no models/default/ there.
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([script, "serve"], cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and 'pip install -e ".[serve,train]"' in done.stderr
    assert "python -m model.build_default --out models/default" in done.stderr
    done = subprocess.run([script, "train"], cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Install the train extra" in done.stderr

    env = {
        "PATH": str(venv / "bin"),
        "RETRIEVAL_MODEL_PATH": str(default_model_path),
        "RETRIEVAL_DATA_DIR": str(tmp_path / "data"),
    }
    with serving([script], env, work) as url:
        photos = tmp_path / "photos"
        write_files(photos, {f"cup/{i}.jpg": photo_views["coffee"][i] for i in range(2)})
        done = subprocess.run(
            [script, "enroll-folder", str(photos), "--url", url],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert outcomes(done.stdout) == {"cup/0.jpg": "enrolled", "cup/1.jpg": "enrolled"}
