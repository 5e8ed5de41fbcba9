"""``centroid-retrieval serve``: the real service on a real port, or a message saying what is
missing (the model, or the serve extra)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cli.run_cli import ROOT, cli_command, cli_env, run_cli, serving


def test_serves_the_app_from_the_environment_on_the_given_port(
    default_model_path: Path, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    env = {
        "RETRIEVAL_MODEL_PATH": str(default_model_path),
        "RETRIEVAL_DATA_DIR": str(tmp_path / "data"),
        "RETRIEVAL_ALLOW_GPU": "false",
        "RETRIEVAL_MAX_K": "70",
    }
    with serving(cli_command(), cli_env(env), ROOT) as url:
        info = httpx.get(f"{url}/info", timeout=10).json()
        assert info["limits"]["max_k"] == 70  # the environment reached the app
        photo = photo_views["coffee"][0]
        enrolled = httpx.post(f"{url}/items/cup/images", files={"images": ("a.jpg", photo)})
        assert enrolled.status_code == 201, enrolled.text
        assert (tmp_path / "data" / "store.sqlite3").is_file()


def test_without_a_model_it_says_how_to_build_one(tmp_path: Path) -> None:
    done = run_cli(
        "serve", env={"RETRIEVAL_MODEL_PATH": "models/default/embedder.onnx"}, cwd=tmp_path
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: no model at models/default/embedder.onnx.")
    assert 'pip install -e ".[serve,train]"' in done.stderr
    assert "python -m model.build_default --out models/default" in done.stderr
    assert "make model" in done.stderr


def test_a_model_elsewhere_is_built_to_its_folder(tmp_path: Path) -> None:
    done = run_cli("serve", env={"RETRIEVAL_MODEL_PATH": str(tmp_path / "m" / "embedder.onnx")})
    assert f"python -m model.build_default --out {tmp_path / 'm'}" in done.stderr
    done = run_cli("serve", env={"RETRIEVAL_MODEL_PATH": str(tmp_path / "mine.onnx")})
    assert "--out models/default" in done.stderr
    assert "RETRIEVAL_MODEL_PATH=models/default/embedder.onnx" in done.stderr


def test_without_the_serve_extra_it_names_it() -> None:
    done = run_cli("serve", blocked=["onnxruntime", "faiss"])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no module onnxruntime, faiss" in done.stderr
    assert 'pip install -e ".[serve]"' in done.stderr and '".[serve-gpu]"' in done.stderr


def test_an_invalid_setting_is_a_message() -> None:
    done = run_cli("serve", env={"RETRIEVAL_MAX_K": "zero"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: invalid RETRIEVAL_* setting")


def test_a_non_loopback_host_without_keys_is_refused(tmp_path: Path) -> None:
    # No model here: the refusal comes first, so nothing is loaded to be refused.
    env = {"RETRIEVAL_MODEL_PATH": str(tmp_path / "embedder.onnx"), "RETRIEVAL_API_KEYS": ""}
    done = run_cli("serve", "--host", "0.0.0.0", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: refusing to serve on 0.0.0.0, a non-loopback address")
    assert "centroid-retrieval make-key" in done.stderr
    assert "RETRIEVAL_ALLOW_ANONYMOUS=true" in done.stderr
    # Allowed explicitly: a warning, then on to the next check (the missing model).
    done = run_cli("serve", "--host", "0.0.0.0", env={**env, "RETRIEVAL_ALLOW_ANONYMOUS": "true"})
    assert done.stderr.startswith("warning: serving on 0.0.0.0 with RETRIEVAL_ALLOW_ANONYMOUS")
    assert "error: no model at" in done.stderr
    # With a key, or on loopback, there is nothing to refuse.
    key_line = "k:read:" + "0" * 32 + ":" + "0" * 64
    done = run_cli("serve", "--host", "0.0.0.0", env={**env, "RETRIEVAL_API_KEYS": key_line})
    assert done.stderr.startswith("error: no model at")
    done = run_cli("serve", "--host", "::1", env=env)
    assert done.stderr.startswith("error: no model at")


def test_unusable_key_lines_are_a_message() -> None:
    done = run_cli("serve", env={"RETRIEVAL_API_KEYS": "cr_k_" + "0" * 64})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: API keys: RETRIEVAL_API_KEYS, entry 1: expected")
    assert "0" * 64 not in done.stderr
