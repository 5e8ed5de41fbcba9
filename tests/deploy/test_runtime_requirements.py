"""The Docker runtime stage, without Docker: its requirements file installs into a fresh venv,
and the service starts from exactly the paths the stage copies, on the real model, with no torch
anywhere in that environment."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from bench.loadtest.photo_set import build_photo_set
from bench.service_process import service_process

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
# What the service imports, and nothing of the training kit.
SERVICE_PACKAGES = ["app", "artifact", "store", "index"]


def _stages(text: str) -> dict[str, str]:
    """Stage name → its instructions, from a multi-stage Dockerfile."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_dockerfile_stages_are_what_the_runtime_test_reads() -> None:
    stages = _stages(DOCKERFILE.read_text())
    assert list(stages) == ["model-build", "runtime-cpu", "runtime-gpu", "runtime"]
    # The export's parity check runs ONNX Runtime; the build stage has it from the CPU lock.
    assert "-r requirements/serve.txt -r requirements/train.txt" in stages["model-build"]
    assert "COPY requirements/serve.txt" in stages["runtime-cpu"]
    assert "COPY requirements/serve-gpu.txt" in stages["runtime-gpu"]
    # Never both twins in one image: they install the same `onnxruntime` and `faiss` modules.
    gpu_instructions = [ln for ln in stages["runtime-gpu"].splitlines() if not ln.startswith("#")]
    assert not any("requirements/serve.txt" in ln for ln in gpu_instructions)
    runtime = stages["runtime"]
    assert re.search(r"^USER retrieval$", runtime, flags=re.MULTILINE)
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert '"--port", "8000"' in runtime
    # Whole torch-free packages, each to the same path, never files picked out of one.
    copies = re.findall(r"^COPY (?!--)(\S+) (\S+)$", runtime, flags=re.MULTILINE)
    assert copies == [(f"{p}/", f"{p}/") for p in SERVICE_PACKAGES]
    assert all((ROOT / p / "__init__.py").is_file() for p in SERVICE_PACKAGES)
    serve = (ROOT / "requirements" / "serve.txt").read_text().splitlines()
    packages = {re.split(r"[=<>\[ ]", ln)[0].lower() for ln in serve if ln and ln[0] != "#"}
    assert "onnxruntime" in packages and not packages & {"torch", "torchvision", "timm", "onnx"}


@pytest.mark.slow
def test_runtime_requirements_serve_without_torch(
    default_model_path: Path, tmp_path: Path, serve_venv: Path
) -> None:
    stages = _stages(DOCKERFILE.read_text())
    (requirements,) = re.findall(r"^COPY (requirements/\S+) ", stages["runtime-cpu"], re.M)
    assert requirements == "requirements/serve.txt"  # what the serve_venv fixture holds
    # The service's source, copied the way the runtime stage copies it (not from another stage).
    srv = tmp_path / "srv"
    copies = re.findall(r"^COPY (?!--)(\S+) (\S+)$", stages["runtime"], flags=re.MULTILINE)
    assert copies, "no COPY lines found in the runtime stage"
    for src, dst in copies:
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, srv / dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (srv / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / src, srv / dst)

    python = str(serve_venv / "bin" / "python")
    # Only the copies may serve: the project must not be installed in this environment.
    not_installed = subprocess.run(
        [python, "-m", "pip", "show", "centroid-retrieval"], capture_output=True, timeout=60
    )
    assert not_installed.returncode != 0, "the project is installed in the runtime venv"

    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, timeout=60)
    assert no_torch.returncode != 0 and b"ModuleNotFoundError" in no_torch.stderr
    probe = "import importlib.util as u; print(u.find_spec('torchvision'), u.find_spec('timm'))"
    assert subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split() == ["None", "None"]

    photo = build_photo_set(1).all_views()[0]
    with service_process(
        default_model_path, tmp_path / "data", python=python, cwd=srv, ready_timeout_s=180
    ) as url:
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        files = {"images": ("a.jpg", photo, "image/jpeg")}
        assert httpx.post(f"{url}/items/probe/images", files=files, timeout=60).status_code == 201
        hits = httpx.post(
            f"{url}/search", files={"image": ("q.jpg", photo, "image/jpeg")}, timeout=60
        ).json()["results"]
        assert hits[0]["item_id"] == "probe"
