"""``python -m model.evaluate`` on a checkpoint and on its ONNX export gives the same metrics,
NMI and Recall@K included, and ``--tsne`` writes the plot with them in its title."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from model.config.train_config import load_config
from model.engine.trainer_builder import build_trainer

from .test_train_end_to_end import tiny_config

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_checkpoint_and_onnx_metrics_agree(photo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, tiny_config(photo_folder, out, 2))
    build_trainer(cfg).fit(2)
    ckpt = out / "best.pt"
    run("-m", "model.export", str(ckpt), "--out", str(tmp_path / "model"))
    printed = run(
        "-m", "model.evaluate", "--checkpoint", str(ckpt), "--json", str(tmp_path / "c.json")
    )
    assert "centroid" in printed and "mAP" in printed
    printed_onnx = run(
        "-m", "model.evaluate", "--onnx", str(tmp_path / "model" / "embedder.onnx"),
        "data.dataset=folder", f"data.root={photo_folder}", "--json", str(tmp_path / "o.json"),
        "--tsne", str(tmp_path / "tsne.png"),
    )  # fmt: skip
    from_ckpt = json.loads((tmp_path / "c.json").read_text())["metrics"]
    from_onnx = json.loads((tmp_path / "o.json").read_text())["metrics"]
    assert set(from_ckpt) == set(from_onnx) and "centroid/mAP" in from_ckpt
    for key in ("clustering/NMI", *(f"instance/recall@{k}" for k in (1, 2, 4, 8))):
        assert key in from_ckpt, key
    for key, value in from_ckpt.items():
        assert abs(from_onnx[key] - value) <= 1e-4, key
    for line in ("recall@8", "NMI (k-means, k = items)", "images/s", "t-SNE of"):
        assert line in printed_onnx, line
    with Image.open(tmp_path / "tsne.png") as img:
        assert img.format == "PNG" and img.size == (1350, 1125)
        title = img.text["Title"]
    assert "tiny-e2e" in title or "embedder.onnx" in title
    assert f"centroid mAP {100 * from_onnx['centroid/mAP']:.2f}%" in title
    assert f"NMI {100 * from_onnx['clustering/NMI']:.2f}%" in title
