"""The root docker-compose.yml validates with Debian's docker-compose 1.29 (no Docker engine
needed for `config`), is found by a plain `docker compose up` at the repository root, says what
the deployment promises, and documents every setting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
MILVUS_OVERRIDE = DEPLOY / "docker-compose.milvus.yml"
MINIO_MESSAGE = "set MINIO_ROOT_PASSWORD in .env"
ENV_EXAMPLE = DEPLOY / ".env.example"
# Settings the compose file pins to the deployment itself instead of reading from .env.
PINNED = {"RETRIEVAL_REDIS_URL", "RETRIEVAL_DATA_DIR"}
# Settings with no default in the compose file: `up` (and `config`) stop without them.
REQUIRED = {"RETRIEVAL_API_KEYS"}
KEYS_MESSAGE = "run 'centroid-retrieval make-key' and put the line in .env"
# A well-formed hash line (of no real key), as `centroid-retrieval make-key` prints one.
HASH_LINE = "ci:read,write:" + "0" * 32 + ":" + "1" * 64


@pytest.fixture(scope="module")
def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "!!! docker-compose NOT INSTALLED: the compose file was NOT validated. "
            "Install it with `apt-get install -y docker-compose` (CI's .ci/run does) !!!"
        )
    return binary


def _run_config(
    binary: str, *args: str, cwd: Path, keys: str | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRIEVAL_")}
    if keys is not None:
        env["RETRIEVAL_API_KEYS"] = keys
    return subprocess.run(
        [binary, *args, "config"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def _config(
    binary: str, *args: str, cwd: Path = ROOT, keys: str | None = HASH_LINE
) -> dict[str, Any]:
    done = _run_config(binary, *args, cwd=cwd, keys=keys)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def _env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def test_validates_with_the_example_env_file(docker_compose: str) -> None:
    config = _config(docker_compose, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE))
    api, redis = config["services"]["api"], config["services"]["redis"]
    lb = config["services"]["lb"]
    assert "ports" not in redis  # Redis is never published on the host
    # Only nginx is published: the API replicas have no host port and no fixed name, so
    # `--scale api=N` starts N of them.
    assert lb["ports"] == ["127.0.0.1:8000:8080/tcp"]
    assert "ports" not in api and "container_name" not in api
    assert lb["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert f"{DEPLOY / 'nginx.conf'}:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    assert any("/healthz" in part for part in lb["healthcheck"]["test"])
    assert api["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert any("/readyz" in part for part in api["healthcheck"]["test"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert redis["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert "redis-data:/data:rw" in redis["volumes"]
    assert set(config["volumes"]) == {"redis-data", "api-data"}
    assert api["environment"]["RETRIEVAL_REDIS_URL"] == "redis://redis:6379/0"
    assert api["build"]["dockerfile"] == "Dockerfile"
    assert api["build"]["args"] == {"VARIANT": "cpu"}


def test_without_api_keys_compose_stops_and_says_how_to_make_one(
    docker_compose: str, tmp_path: Path
) -> None:
    done = _run_config(docker_compose, "--env-file", str(ENV_EXAMPLE), cwd=ROOT, keys=None)
    assert done.returncode != 0
    assert KEYS_MESSAGE in done.stderr
    # An empty value is no key either (`:?` refuses empty as well as unset).
    done = _run_config(docker_compose, "--env-file", str(ENV_EXAMPLE), cwd=ROOT, keys="")
    assert done.returncode != 0 and KEYS_MESSAGE in done.stderr


def test_the_key_line_in_env_reaches_the_api_and_anonymous_stays_off(
    docker_compose: str, tmp_path: Path
) -> None:
    (tmp_path / "deploy").mkdir()
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(DEPLOY / "redis.conf", tmp_path / "deploy" / "redis.conf")
    shutil.copy(DEPLOY / "nginx.conf", tmp_path / "deploy" / "nginx.conf")
    # What `centroid-retrieval make-key >> .env` leaves: the example plus the key line.
    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text() + f"RETRIEVAL_API_KEYS={HASH_LINE}\n")
    api = _config(docker_compose, cwd=tmp_path, keys=None)["services"]["api"]
    assert api["environment"]["RETRIEVAL_API_KEYS"] == HASH_LINE
    assert api["environment"]["RETRIEVAL_ALLOW_ANONYMOUS"] == "false"
    assert api["environment"]["RETRIEVAL_CORS_ORIGINS"] == ""


def test_plain_config_at_the_root_builds_the_root_dockerfile(docker_compose: str) -> None:
    # What a new user types: no -f, no --env-file, from the repository root.
    config = _config(docker_compose, cwd=ROOT)
    assert set(config["services"]) == {"api", "lb", "redis"}
    build = config["services"]["api"]["build"]
    assert Path(build["context"]) == ROOT
    assert (Path(build["context"]) / build.get("dockerfile", "Dockerfile")).is_file()
    redis_conf = f"{DEPLOY / 'redis.conf'}:/usr/local/etc/redis/redis.conf:ro"
    assert redis_conf in config["services"]["redis"]["volumes"]


def test_plain_config_reads_the_env_file_at_the_root(docker_compose: str, tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(DEPLOY / "redis.conf", tmp_path / "deploy" / "redis.conf")
    shutil.copy(DEPLOY / "nginx.conf", tmp_path / "deploy" / "nginx.conf")
    env = ENV_EXAMPLE.read_text()
    env = env.replace("API_PORT=8000", "API_PORT=9123").replace(
        "RETRIEVAL_MAX_K=100", "RETRIEVAL_MAX_K=7"
    )
    env = env.replace(
        "RETRIEVAL_MODEL_PATH=/srv/models/default/embedder.onnx",
        "RETRIEVAL_MODEL_PATH=/models/embedder.onnx",
    )
    (tmp_path / ".env").write_text(env)
    services = _config(docker_compose, cwd=tmp_path)["services"]
    api = services["api"]
    assert services["lb"]["ports"] == ["127.0.0.1:9123:8080/tcp"]
    assert api["environment"]["RETRIEVAL_MAX_K"] == "7"
    assert api["environment"]["RETRIEVAL_MODEL_PATH"] == "/models/embedder.onnx"
    # MODEL_DIR=./models is the root's models/, where `make model` builds the default.
    assert f"{tmp_path / 'models'}:/models:ro" in api["volumes"]


def test_gpu_override_merges(docker_compose: str) -> None:
    config = _config(
        docker_compose,
        "-f", str(COMPOSE),
        "-f", str(DEPLOY / "docker-compose.gpu.yml"),
        "--env-file", str(ENV_EXAMPLE),
    )  # fmt: skip
    api = config["services"]["api"]
    assert api["build"]["args"] == {"VARIANT": "gpu"}
    (device,) = api["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_every_setting_is_passed_and_documented_with_the_apps_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The app's own defaults: no RETRIEVAL_* of this process's environment (a test package's
    # conftest may set some for its services) may stand in for them.
    for var in [v for v in os.environ if v.startswith("RETRIEVAL_")]:
        monkeypatch.delenv(var)
    compose = COMPOSE.read_text()
    env_example = _env_example()
    api_env = yaml.safe_load(compose)["services"]["api"]["environment"]
    settings_vars = {f"RETRIEVAL_{name.upper()}" for name in Settings.model_fields}
    assert settings_vars == set(api_env)  # no setting missing, none invented
    # Every ${VAR:-default} of the compose file is in .env.example with the same default...
    substitutions = dict(re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", compose))
    assert substitutions == {k: v for k, v in env_example.items()}
    # ...and those defaults are the app's own, except where the deployment differs on purpose.
    defaults = Settings()
    for var in settings_vars - PINNED - REQUIRED - {"RETRIEVAL_MODEL_PATH"}:
        value = getattr(defaults, var.removeprefix("RETRIEVAL_").lower())
        expected = str(value).lower() if isinstance(value, bool) else str(value)
        assert env_example[var] == ("" if value is None else expected), var
    # The required ones have no default anywhere: documented in .env.example, commented out.
    for var in REQUIRED:
        assert f"${{{var}:?{KEYS_MESSAGE}}}" in compose
        assert var not in env_example
        assert f"#   {var}=" in ENV_EXAMPLE.read_text()


def test_nginx_listens_where_lb_publishes_and_balances_over_the_api_service() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    nginx_conf = (DEPLOY / "nginx.conf").read_text()
    (published,) = services["lb"]["ports"]
    (listen,) = re.findall(r"^\s*listen (\d+);", nginx_conf, re.MULTILINE)
    assert published.rsplit(":", 1)[1].strip('"') == listen
    # The upstream is the compose service's name (Docker's DNS gives every replica's address)
    # at the port the image serves on (the Dockerfile's CMD).
    (server,) = re.findall(r"^\s*server ([\w.-]+:\d+)", nginx_conf, re.MULTILINE)
    assert server == "api:8000"
    assert '"--port", "8000"' in (ROOT / "Dockerfile").read_text()
    # Every replica mounts the same named volume at RETRIEVAL_DATA_DIR: the shared originals.
    api = services["api"]
    assert f"api-data:{api['environment']['RETRIEVAL_DATA_DIR']}" in api["volumes"]


def _milvus_config(binary: str) -> dict[str, Any]:
    return _config(
        binary,
        "-f", str(COMPOSE),
        "-f", str(MILVUS_OVERRIDE),
        "--env-file", str(ENV_EXAMPLE),
    )  # fmt: skip


def test_milvus_override_adds_etcd_minio_and_milvus_and_points_the_api_at_them(
    docker_compose: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "not-a-real-password")
    config = _milvus_config(docker_compose)
    services = config["services"]
    assert set(services) == {"api", "lb", "redis", "etcd", "minio", "milvus"}
    for name in ("etcd", "minio", "milvus"):
        service = services[name]
        image = service["image"]
        # Official images at a pinned release, never a moving tag.
        assert ":" in image and not image.endswith(":latest"), image
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert "ports" not in service, f"{name} is published on the host"
        (volume,) = service["volumes"]
        assert volume.split(":")[0] in config["volumes"], f"{name} has no named volume"
    assert services["milvus"]["depends_on"] == {
        "etcd": {"condition": "service_healthy"},
        "minio": {"condition": "service_healthy"},
    }
    api = services["api"]
    env = api["environment"]
    assert env["RETRIEVAL_INDEX"] == "milvus"
    assert env["RETRIEVAL_MILVUS_URI"] == "http://milvus:19530"
    assert env["RETRIEVAL_BLOB_BACKEND"] == "s3"
    assert env["RETRIEVAL_S3_ENDPOINT"] == "http://minio:9000"
    # The same MinIO, its own bucket: Milvus's segments and the originals never share one.
    milvus_env = services["milvus"]["environment"]
    assert env["RETRIEVAL_S3_BUCKET"] != milvus_env["MINIO_BUCKET_NAME"]
    assert milvus_env["MINIO_ADDRESS"] == "minio:9000"
    assert env["RETRIEVAL_S3_SECRET_KEY"] == milvus_env["MINIO_SECRET_ACCESS_KEY"]
    assert env["RETRIEVAL_S3_SECRET_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    assert api["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "milvus": {"condition": "service_healthy"},
        "minio": {"condition": "service_healthy"},
    }
    # The image gets the Milvus and S3 clients from their lock files.
    extra = api["build"]["args"]["EXTRA_REQUIREMENTS"].split()
    assert extra == ["serve-milvus", "serve-s3"]
    assert all((ROOT / "requirements" / f"{name}.txt").is_file() for name in extra)
    assert "EXTRA_REQUIREMENTS" in (ROOT / "Dockerfile").read_text()
    # Every variable the override sets is a setting the app reads.
    settings_vars = {f"RETRIEVAL_{name.upper()}" for name in Settings.model_fields}
    overridden = yaml.safe_load(MILVUS_OVERRIDE.read_text())["services"]["api"]["environment"]
    assert set(overridden) <= settings_vars
    # Still N replicas behind nginx: no host port, no fixed name on the api service.
    assert "ports" not in api and "container_name" not in api
    assert services["lb"]["ports"] == ["127.0.0.1:8000:8080/tcp"]


def test_milvus_override_without_a_minio_password_stops_and_says_so(
    docker_compose: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MINIO_ROOT_PASSWORD", raising=False)
    done = _run_config(
        docker_compose,
        "-f", str(COMPOSE),
        "-f", str(MILVUS_OVERRIDE),
        "--env-file", str(ENV_EXAMPLE),
        cwd=ROOT,
        keys=HASH_LINE,
    )  # fmt: skip
    assert done.returncode != 0 and MINIO_MESSAGE in done.stderr
