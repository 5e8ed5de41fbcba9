"""pyproject.toml against the lock files, the GPU twins, the README and the tree.

- Each extra has a lock file, requirements/<extra>.txt: every pin there satisfies the range
  pyproject.toml declares for it, and every package the extra declares is pinned there (the base
  too, in the two runtime locks, which install alone).
- `serve-gpu` is the twin of `serve`: the same packages but onnxruntime-gpu and faiss-gpu-* for
  onnxruntime and faiss-cpu, which install the same Python modules; so no other requirement
  list names a twin, and no `pip install` line of the README asks for both.
- The packages setuptools installs are exactly the importable packages of the tree.
"""

from __future__ import annotations

import copy
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.test_gpu_requirements import _is_cpu_twin, _is_gpu_twin, pins

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
README = ROOT / "README.md"
REQUIREMENTS = ROOT / "requirements"
# Installed alone (the Docker runtime stages, a serve-only pip install): their locks hold the
# base dependencies too. train.txt and dev.txt are installed on top of one of them.
RUNTIME_EXTRAS = ("serve", "serve-gpu")
TWIN_EXTRAS = {"cpu": "serve", "gpu": "serve-gpu"}
# Never installed as packages.
NOT_PACKAGES = {"tests", "docs", "deploy", "configs", "models", "data", "requirements", "runs"}
# `pip install ...[a,b]`, `pip install -e ".[a,b]"`, `pip install 'centroid-retrieval[a]'`.
PIP_EXTRAS = re.compile(r"pip3? install\b[^\n`]*?\[([A-Za-z0-9_,\s-]+)\]")

Project = dict[str, Any]


def _project() -> Project:
    data: Project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return data


def _locks() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(REQUIREMENTS.glob("*.txt"))}


def _declared(project: Project, extra: str | None) -> dict[str, Requirement]:
    """The base's (``None``) or one extra's requirements, by canonical name."""
    reqs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return pins("\n".join(reqs))


def lock_problems(project: Project, locks: dict[str, str]) -> list[str]:
    """Everything that keeps the lock files from pinning exactly what pyproject declares."""
    extras: dict[str, list[str]] = project["optional-dependencies"]
    base = _declared(project, None)
    problems = [
        f"extra {x!r} has no requirements/{x}.txt" for x in sorted(set(extras) - set(locks))
    ]
    problems += [f"requirements/{x}.txt has no extra" for x in sorted(set(locks) - set(extras))]
    pinned = {name: pins(text) for name, text in locks.items()}
    for extra in sorted(set(extras) & set(locks)):
        declared = _declared(project, extra)
        lock = pinned[extra]
        needs = {**base, **declared} if extra in RUNTIME_EXTRAS else declared
        for name, req in needs.items():
            if name not in lock:
                problems.append(f"{req} ({extra}) is pinned in no lock: add it to {extra}.txt")
        for name, pin in lock.items():
            specs = list(pin.specifier)
            if len(specs) != 1 or specs[0].operator != "==":
                problems.append(f"{extra}.txt: {pin} is not an exact == pin")
                continue
            version = specs[0].version
            wanted = [r for r in (declared.get(name), base.get(name)) if r is not None]
            if not wanted:
                problems.append(
                    f"{extra}.txt pins {pin}, which pyproject's {extra} does not declare"
                )
            for req in wanted:
                if not req.specifier.contains(version, prereleases=True):
                    problems.append(f"{extra}.txt pins {pin} outside pyproject's {req}")
    return problems


def twin_problems(project: Project) -> list[str]:
    """Everything that keeps `serve-gpu` from being the GPU twin of `serve`, or lets a twin in
    anywhere else."""
    cpu = _declared(project, TWIN_EXTRAS["cpu"])
    gpu = _declared(project, TWIN_EXTRAS["gpu"])
    problems = [f"serve names GPU package {n}" for n in cpu if _is_gpu_twin(n)]
    problems += [f"serve-gpu names CPU package {n}" for n in gpu if _is_cpu_twin(n)]
    cpu_twins = sorted(n for n in cpu if _is_cpu_twin(n))
    gpu_twins = sorted(n for n in gpu if _is_gpu_twin(n))
    if cpu_twins != ["faiss-cpu", "onnxruntime"]:
        problems.append(f"serve needs onnxruntime and faiss-cpu, has {cpu_twins}")
    if len(gpu_twins) != 2 or "onnxruntime-gpu" not in gpu_twins:
        problems.append(f"serve-gpu needs onnxruntime-gpu and one faiss-gpu-*, has {gpu_twins}")
    shared_cpu = {n: r for n, r in cpu.items() if not _is_cpu_twin(n) and not _is_gpu_twin(n)}
    shared_gpu = {n: r for n, r in gpu.items() if not _is_cpu_twin(n) and not _is_gpu_twin(n)}
    for name in sorted(shared_cpu.keys() ^ shared_gpu.keys()):
        problems.append(f"{name} is in only one of serve and serve-gpu")
    for name in sorted(shared_cpu.keys() & shared_gpu.keys()):
        if str(shared_cpu[name]) != str(shared_gpu[name]):
            problems.append(f"serve has {shared_cpu[name]}, serve-gpu {shared_gpu[name]}")
    others = [None, *(x for x in project["optional-dependencies"] if x not in RUNTIME_EXTRAS)]
    for extra in others:
        for name in _declared(project, extra):
            if _is_cpu_twin(name) or _is_gpu_twin(name):
                problems.append(
                    f"{extra or 'the base'} names twin {name}: only serve/serve-gpu may"
                )
    return problems


def readme_install_problems(text: str, extras: set[str]) -> tuple[int, list[str]]:
    """How many `pip install` commands with extras ``text`` shows, and what is wrong with them."""
    problems = []
    found = PIP_EXTRAS.findall(text)
    for group in found:
        asked = {canonicalize_name(e.strip()) for e in group.split(",") if e.strip()}
        if {"serve", "serve-gpu"} <= asked:
            problems.append(f"[{group}] installs both twins (serve and serve-gpu)")
        problems += [f"[{group}] names unknown extra {e!r}" for e in sorted(asked - extras)]
    return len(found), problems


def _package_dirs() -> list[str]:
    """Dotted names of the tree's importable packages: directories holding Python files."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.parent.relative_to(ROOT)
        parts = rel.parts
        if not parts or parts[0] in NOT_PACKAGES or any(p.startswith(".") for p in parts):
            continue
        if "__pycache__" in parts:
            continue
        out.append(".".join(parts))
    return sorted(set(out))


def test_lock_files_pin_what_pyproject_declares() -> None:
    assert lock_problems(_project(), _locks()) == []


def test_serve_gpu_is_the_gpu_twin_of_serve_and_no_other_list_names_a_twin() -> None:
    assert twin_problems(_project()) == []


def test_no_install_command_in_the_readme_asks_for_both_twins() -> None:
    extras = set(_project()["optional-dependencies"])
    found, problems = readme_install_problems(README.read_text(encoding="utf-8"), extras)
    assert problems == []
    assert found, "README.md shows no `pip install` command with extras: its Install section?"


def test_the_installed_packages_are_the_trees_packages() -> None:
    tool = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert sorted(tool["packages"]) == _package_dirs()


def test_the_console_script_is_the_cli() -> None:
    scripts = _project()["scripts"]
    assert list(scripts) == ["centroid-retrieval"]
    module, _, attr = scripts["centroid-retrieval"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def _edited(edit: str) -> tuple[Project, dict[str, str]]:
    project, locks = copy.deepcopy(_project()), _locks()
    extras = project["optional-dependencies"]
    match edit:
        case "pin outside range":
            locks["serve"] = re.sub(r"^uvicorn==\S+", "uvicorn==0.1.0", locks["serve"], flags=re.M)
        case "declared, not pinned":
            extras["train"].append("einops>=0.8")
        case "pinned, not declared":
            extras["dev"] = [r for r in extras["dev"] if not r.startswith("locust")]
        case "base not in a runtime lock":
            project["dependencies"].append("rich>=13")
        case "range pin in a lock":
            locks["dev"] = re.sub(r"^pytest==", "pytest>=", locks["dev"], flags=re.M)
        case "extra without a lock":
            extras["docs"] = ["mkdocs>=1"]
        case "gpu twin in serve":
            extras["serve"].append("onnxruntime-gpu>=1.31,<2")
        case "cpu twin in serve-gpu":
            extras["serve-gpu"].append("faiss-cpu>=1.15,<2")
        case "twin in the base":
            project["dependencies"].append("onnxruntime>=1.31,<2")
        case "twin in train":
            extras["train"].append("faiss-cpu>=1.15,<2")
        case "shared requirement differs":
            extras["serve-gpu"] = [
                "fastapi>=0.100,<1" if r.startswith("fastapi>") else r for r in extras["serve-gpu"]
            ]
        case "only in serve":
            extras["serve"].append("orjson>=3")
    return project, locks


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("pin outside range", "serve.txt pins uvicorn==0.1.0 outside pyproject's uvicorn"),
        ("declared, not pinned", "einops>=0.8 (train) is pinned in no lock"),
        ("pinned, not declared", "dev.txt pins locust==2.47.0, which pyproject's dev does not"),
        ("base not in a runtime lock", "rich>=13 (serve) is pinned in no lock"),
        ("range pin in a lock", "dev.txt: pytest>=9.2.0 is not an exact == pin"),
        ("extra without a lock", "extra 'docs' has no requirements/docs.txt"),
    ],
)
def test_the_lock_check_catches_drift(edit: str, expected: str) -> None:
    problems = lock_problems(*_edited(edit))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("gpu twin in serve", "serve names GPU package onnxruntime-gpu"),
        ("cpu twin in serve-gpu", "serve-gpu names CPU package faiss-cpu"),
        ("twin in the base", "the base names twin onnxruntime"),
        ("twin in train", "train names twin faiss-cpu"),
        ("shared requirement differs", "serve has fastapi<1,>=0.165, serve-gpu fastapi<1,>=0.100"),
        ("only in serve", "orjson is in only one of serve and serve-gpu"),
    ],
)
def test_the_twin_check_catches_drift(edit: str, expected: str) -> None:
    problems = twin_problems(_edited(edit)[0])
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "line",
    [
        'pip install -e ".[serve,serve-gpu]"',
        "pip install -e '.[serve-gpu, train, serve]'",
        "python -m pip install 'centroid-retrieval[Serve_GPU,serve]'",
        "pip install -e /work/main[serve,dev,serve-gpu]",
    ],
)
def test_the_readme_check_catches_both_twins_in_one_command(line: str) -> None:
    text = f"Install:\n\n```sh\npip install -e .\n{line}\n```\n"
    found, problems = readme_install_problems(text, {"serve", "serve-gpu", "train", "dev"})
    assert found == 1
    assert problems and "installs both twins" in problems[0]


def test_the_readme_check_accepts_the_sanctioned_combinations() -> None:
    text = "\n".join(
        f'pip install -e ".[{extras}]"'
        for extras in ("serve", "serve,train", "serve-gpu", "serve-gpu,train", "serve,train,dev")
    )
    assert readme_install_problems(text, {"serve", "serve-gpu", "train", "dev"}) == (5, [])
