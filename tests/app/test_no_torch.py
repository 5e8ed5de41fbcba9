"""The runtime image stage without Docker: with torch (and the training kit) made unimportable,
every module of ``app``, ``artifact``, ``store`` and ``index`` imports, and the service answers an
enrollment and a search over real HTTP on the tiny artifact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.tiny_artifact import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "torchvision", "timm", "model")
RUNTIME_PACKAGES = ("app", "artifact", "store", "index")

# Runs in a fresh interpreter: the blocker must be in place before anything else is imported,
# which a test in this (torch-importing) process could never arrange.
RUNTIME_STAGE = """
import importlib.abc
import sys

BLOCKED = set(sys.argv[1].split(","))
refused = []


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            refused.append(name)
            raise ImportError(f"{name} is blocked: the runtime image has no {name}")
        return None


loaded_before = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
sys.meta_path.insert(0, Blocker())
blocks = {}
for name in sorted(BLOCKED):
    try:
        __import__(name)
        blocks[name] = False
    except ImportError:
        blocks[name] = True
refused.clear()

import importlib
import json
import pkgutil
from pathlib import Path

imported = []
for package in sys.argv[2].split(","):
    imported.append(importlib.import_module(package).__name__)
    for info in pkgutil.walk_packages(sys.modules[package].__path__, prefix=package + "."):
        imported.append(importlib.import_module(info.name).__name__)

import httpx

from app.main import create_app
from app.settings import Settings
from tests.live_server import live_server

model_path, data_dir, gallery_dir, query = sys.argv[3:7]
settings = Settings(model_path=model_path, data_dir=data_dir, allow_gpu=False, log_level="warning")
app = create_app(settings)
enrolled = {}
with live_server(app, timeout=60) as url, httpx.Client(base_url=url, timeout=60) as client:
    for folder in sorted(Path(gallery_dir).iterdir()):
        files = [("images", (p.name, p.read_bytes())) for p in sorted(folder.iterdir())]
        r = client.post(f"/items/{folder.name}/images", files=files)
        enrolled[folder.name] = r.status_code
    r = client.post("/search", files={"image": ("q.jpg", Path(query).read_bytes())})
    search = {"status": r.status_code, "body": r.json()}
    info = client.get("/info").json()

print(json.dumps({
    "loaded_before": loaded_before,
    "blocks": blocks,
    "refused": refused,
    "imported": imported,
    "enrolled": enrolled,
    "search": search,
    "model_name": info["model"]["model_name"],
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
}))
"""


def test_the_service_runs_with_torch_unimportable(
    tiny_model_path: Path, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    gallery = tmp_path / "gallery"
    items = ("coffee", "rocket", "chelsea")
    for item in items:
        (gallery / item).mkdir(parents=True)
        for i, view in enumerate(photo_views[item][:3]):
            (gallery / item / f"{i}.jpg").write_bytes(view)
    query = tmp_path / "query.jpg"
    query.write_bytes(photo_views["rocket"][0])  # enrolled: rocket's own centroid is closest

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RUNTIME_STAGE,
            ",".join(BLOCKED),
            ",".join(RUNTIME_PACKAGES),
            str(tiny_model_path),
            str(tmp_path / "data"),
            str(gallery),
            str(query),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])

    # The blocker was in place before anything heavy loaded, and it does block.
    assert report["loaded_before"] == []
    assert report["blocks"] == {name: True for name in BLOCKED}
    # No runtime module even tried to import a blocked one (a caught ImportError counts too).
    assert report["refused"] == [] and report["heavy"] == []
    assert {
        "app.main",
        "artifact.onnx_embedder",
        "store.redis_store",
        "index.flat_centroid_index",
    } <= set(report["imported"])
    assert report["enrolled"] == {item: 201 for item in items}
    assert report["search"]["status"] == 200
    results = report["search"]["body"]["results"]
    assert results[0]["item_id"] == "rocket" and len(results) == len(items)
    assert report["model_name"] == TINY_SPEC.model_name
