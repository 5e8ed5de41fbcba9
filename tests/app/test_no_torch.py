"""The service process never imports torch, and `model/__init__.py` imports nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_service_import_and_startup_do_not_import_torch(
    default_model_path: Path, tmp_path: Path
) -> None:
    code = f"""
import sys
from fastapi.testclient import TestClient
from app.main import create_app
from app.settings import Settings
app = create_app(Settings(model_path={str(default_model_path)!r}, data_dir={str(tmp_path)!r}))
with TestClient(app) as c:
    app.state.service.wait_loaded(120)
    assert c.get("/readyz").status_code == 200, c.get("/readyz").text
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm"))
assert not heavy, heavy
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_model_package_init_is_empty() -> None:
    text = (ROOT / "model" / "__init__.py").read_text()
    assert not [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
