"""requirements/serve-gpu.txt is the GPU twin of requirements/serve.txt: the same pins, except
onnxruntime → onnxruntime-gpu and faiss-cpu → faiss-gpu-*; and neither file names a package of
the other's twin pair, since both twins install the same Python module (`onnxruntime`,
`faiss`) and whichever is installed last would silently win."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements"
SERVE = REQUIREMENTS / "serve.txt"
SERVE_GPU = REQUIREMENTS / "serve-gpu.txt"

ORT_CPU, ORT_GPU = "onnxruntime", "onnxruntime-gpu"
FAISS_CPU = "faiss-cpu"
FAISS_GPU = re.compile(r"^faiss-gpu(-cu\d+)?$")  # faiss-gpu-cu12, faiss-gpu-cu11, ...


def _is_gpu_twin(name: str) -> bool:
    return name == ORT_GPU or bool(FAISS_GPU.match(name))


def _is_cpu_twin(name: str) -> bool:
    return name in (ORT_CPU, FAISS_CPU)


def pins(text: str) -> dict[str, Requirement]:
    """Canonical package name → its requirement, from a requirements file's text."""
    out: dict[str, Requirement] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in out:
            raise ValueError(f"{name} listed twice")
        out[name] = req
    return out


def twin_problems(cpu_text: str, gpu_text: str) -> list[str]:
    """Everything that keeps ``gpu_text`` from being the GPU twin of ``cpu_text``."""
    cpu, gpu = pins(cpu_text), pins(gpu_text)
    problems = []
    for label, reqs in (("serve.txt", cpu), ("serve-gpu.txt", gpu)):
        for name, req in reqs.items():
            # A range would let the CPU and GPU images resolve different versions.
            specs = list(req.specifier)
            if len(specs) != 1 or specs[0].operator != "==":
                problems.append(f"{label}: {name} is not pinned with ==: {req}")
    problems += [f"serve.txt names GPU package {n}" for n in cpu if _is_gpu_twin(n)]
    problems += [f"serve-gpu.txt names CPU package {n}" for n in gpu if _is_cpu_twin(n)]
    for name in (ORT_CPU, FAISS_CPU):
        if name not in cpu:
            problems.append(f"serve.txt lacks {name}")
    if ORT_GPU not in gpu:
        problems.append(f"serve-gpu.txt lacks {ORT_GPU}")
    faiss_gpu = [n for n in gpu if FAISS_GPU.match(n)]
    if len(faiss_gpu) != 1:
        problems.append(f"serve-gpu.txt needs exactly one faiss-gpu-* package, has {faiss_gpu}")
    if ORT_CPU in cpu and ORT_GPU in gpu and cpu[ORT_CPU].specifier != gpu[ORT_GPU].specifier:
        # Same release train, built from one source tree: a different version would mean the
        # GPU image runs an ONNX Runtime the CPU tests never saw. (faiss-gpu-cu* is a separate
        # build with its own version numbers, so its version is not compared.)
        problems.append(
            f"{ORT_GPU}{gpu[ORT_GPU].specifier} differs from {ORT_CPU}{cpu[ORT_CPU].specifier}"
        )
    shared_cpu = {n: r for n, r in cpu.items() if not _is_cpu_twin(n) and not _is_gpu_twin(n)}
    shared_gpu = {n: r for n, r in gpu.items() if not _is_cpu_twin(n) and not _is_gpu_twin(n)}
    for name in sorted(shared_cpu.keys() - shared_gpu.keys()):
        problems.append(f"serve-gpu.txt lacks {shared_cpu[name]}")
    for name in sorted(shared_gpu.keys() - shared_cpu.keys()):
        problems.append(f"serve-gpu.txt adds {shared_gpu[name]}, which serve.txt does not have")
    for name in sorted(shared_cpu.keys() & shared_gpu.keys()):
        a, b = shared_cpu[name], shared_gpu[name]
        if (a.specifier, a.extras, a.marker) != (b.specifier, b.extras, b.marker):
            problems.append(f"pins differ: serve.txt {a}, serve-gpu.txt {b}")
    return problems


def test_serve_gpu_is_the_gpu_twin_of_serve() -> None:
    assert twin_problems(SERVE.read_text(), SERVE_GPU.read_text()) == []


Edit = Callable[[str], str]


def _add(line: str) -> Edit:
    return lambda text: text + line + "\n"


def _swap(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text
        return text.replace(old, new)

    return edit


@pytest.mark.parametrize(
    ("which", "edit", "expected"),
    [
        ("gpu", _add("onnxruntime==1.31.1"), "serve-gpu.txt names CPU package onnxruntime"),
        ("gpu", _add("faiss-cpu==1.15.1"), "serve-gpu.txt names CPU package faiss-cpu"),
        ("cpu", _add("faiss-gpu-cu12==1.14.1"), "serve.txt names GPU package faiss-gpu-cu12"),
        ("cpu", _add("onnxruntime-gpu==1.31.1"), "serve.txt names GPU package onnxruntime-gpu"),
        ("gpu", _swap("numpy==", "numpy==0.0.1\n# "), "pins differ: serve.txt numpy"),
        ("gpu", _swap("redis==", "# redis=="), "serve-gpu.txt lacks redis=="),
        ("gpu", _add("torch==2.14.1"), "serve-gpu.txt adds torch==2.14.1"),
        ("gpu", _swap("onnxruntime-gpu==1.31.1", "onnxruntime-gpu==1.30.0"), "differs from"),
        ("gpu", _swap("faiss-gpu-cu12==", "# "), "exactly one faiss-gpu-*"),
        ("cpu", _swap("uvicorn==", "uvicorn>="), "uvicorn is not pinned with =="),
    ],
)
def test_twin_check_catches_drift(which: str, edit: Edit, expected: str) -> None:
    """The check above would fail for each way the two files can drift apart."""
    cpu, gpu = SERVE.read_text(), SERVE_GPU.read_text()
    if which == "cpu":
        cpu = edit(cpu)
    else:
        gpu = edit(gpu)
    problems = twin_problems(cpu, gpu)
    assert any(expected in p for p in problems), problems


def test_names_are_compared_canonically() -> None:
    cpu = SERVE.read_text()
    gpu = _swap("pillow==", "Pillow==")(SERVE_GPU.read_text())
    gpu = _swap("python-multipart==", "python_multipart==")(gpu)
    assert twin_problems(cpu, gpu) == []
