"""The export's parity gate: a graph that disagrees with its eager forward is never installed.

The modules below diverge on purpose while ``torch.onnx.export`` traces them, so the ONNX graph
really computes something else than PyTorch does; the gate must catch both a gross and a subtle
disagreement, leave the destination as it was, and say which cosine it measured.
"""

from __future__ import annotations

import dataclasses
import math
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import model.exporter.onnx_exporter as onnx_exporter
from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import PreprocessSpec
from model import build_default
from model.exporter.onnx_exporter import MIN_PARITY_COSINE, ParityError, export_embedder
from model.exporter.parity_photos import load_parity_photos

DIM = 8
INPUT_HW = (32, 32)
# Inside the gate's tolerance band on purpose: cos(angle) = 0.9995 < 0.9999 would still pass a
# gate that only checked, say, 0.999; so this shows the threshold itself is enforced.
SUBTLE_COSINE = 0.9995
REPORTED_COSINE = re.compile(r"cosine min = (-?\d+\.\d+)")


class SmallEmbedder(nn.Module):
    """Pooled pixels → linear → ``DIM`` features, optionally different while being exported.

    ``diverge``: ``None`` (well-behaved), ``"negated"`` (the graph returns ``-f``: cosine -1)
    or ``"tilted"`` (the graph adds an orthogonal component of ``tan θ·|f|`` in an extra
    coordinate that is 0 in eager mode: cosine exactly ``cos θ`` for every photo).
    """

    embedding_dim = DIM

    def __init__(self, diverge: str | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(3 * 4 * 4, DIM - 1)
        self.diverge = diverge

    def embed(self, x: Tensor) -> Tensor:
        f = self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1))
        extra = torch.zeros_like(f[:, :1])
        # True only while torch.onnx.export traces the module: the graph records this branch.
        if torch.onnx.is_in_onnx_export():
            if self.diverge == "negated":
                f = -f
            elif self.diverge == "tilted":
                tan = math.tan(math.acos(SUBTLE_COSINE))
                extra = f.norm(dim=1, keepdim=True) * tan
        return torch.cat([f, extra], dim=1)


def small_spec() -> PreprocessSpec:
    return PreprocessSpec(
        input_size=INPUT_HW, embedding_dim=DIM, model_name="parity-gate-test", model_version="1"
    )


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return load_parity_photos()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(("diverge", "expected_cosine"), [("negated", -1.0), ("tilted", 0.9995)])
def test_diverging_graph_is_refused_and_nothing_is_written(
    diverge: str,
    expected_cosine: float,
    photos: list[bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "model"
    with pytest.raises(ParityError) as excinfo:
        export_embedder(SmallEmbedder(diverge), small_spec(), out, photos)

    message = str(excinfo.value)
    match = REPORTED_COSINE.search(message)
    assert match, message
    # The measured cosine is the constructed one (float32 noise aside), so the gate reports
    # what it saw, not a canned failure.
    assert float(match.group(1)) == pytest.approx(expected_cosine, abs=2e-5)
    assert f"required cosine >= {MIN_PARITY_COSINE}" in message
    assert "max |torch - onnx|" in message
    # The report is also printed before the refusal, for logs of make runs.
    assert REPORTED_COSINE.search(capsys.readouterr().out)
    # No model, no contract, no temporary files: the directory is empty.
    assert list(out.iterdir()) == []


def test_threshold_decides_not_the_difference_alone(photos: list[bytes], tmp_path: Path) -> None:
    # The same subtly diverging module passes a looser bar: it is min_cosine that refused it.
    result = export_embedder(
        SmallEmbedder("tilted"), small_spec(), tmp_path, photos, min_cosine=0.999
    )
    assert result.parity.min_cosine == pytest.approx(SUBTLE_COSINE, abs=2e-5)
    assert result.onnx_path.is_file()


def test_failed_export_leaves_the_previous_model_untouched(
    photos: list[bytes], tmp_path: Path
) -> None:
    export_embedder(SmallEmbedder(), small_spec(), tmp_path, photos)
    before = snapshot(tmp_path)
    assert sorted(before) == ["embedder.json", "embedder.onnx"]
    with pytest.raises(ParityError):
        export_embedder(SmallEmbedder("negated"), small_spec(), tmp_path, photos)
    assert snapshot(tmp_path) == before


def test_any_failure_during_the_check_removes_the_temporary_files(
    photos: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_check(*args: object) -> None:
        raise KeyboardInterrupt  # the harshest case: not even an Exception

    monkeypatch.setattr(onnx_exporter, "check_parity", broken_check)
    with pytest.raises(KeyboardInterrupt):
        export_embedder(SmallEmbedder(), small_spec(), tmp_path / "model", photos)
    assert list((tmp_path / "model").iterdir()) == []


def test_well_behaved_module_exports_and_loads(photos: list[bytes], tmp_path: Path) -> None:
    net = SmallEmbedder()
    result = export_embedder(net, small_spec(), tmp_path, photos)

    assert result.parity.min_cosine >= MIN_PARITY_COSINE
    assert result.onnx_path == tmp_path / "embedder.onnx"
    assert result.contract_path == tmp_path / "embedder.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedder.json", "embedder.onnx"]
    # Readable by others as usual (a 0600 temp-file mode would hide it from a service user).
    assert result.onnx_path.stat().st_mode & stat.S_IRGRP

    embedder = OnnxEmbedder(result.onnx_path, allow_gpu=False)
    assert embedder.spec.model_name == "parity-gate-test"
    assert embedder.spec.input_size == INPUT_HW
    assert embedder.spec.embedding_dim == DIM
    assert embedder.spec.export_date == result.spec.export_date != ""
    assert PreprocessSpec.from_json(result.contract_path.read_text()) == embedder.spec

    # The served file computes what the eager module does, on the service's own pixel path.
    batch = stack_batch([preprocess_bytes(p, embedder.spec) for p in photos])
    with torch.no_grad():
        ref = net.embed(torch.from_numpy(batch).float() / 255).numpy()
    np.testing.assert_allclose(embedder.embed(batch), ref, rtol=1e-4, atol=1e-5)


def test_build_default_exits_non_zero_and_leaves_no_model_for_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make` runs this command for $(MODEL): a refused export must fail the recipe and leave
    # no target behind that a later `make` would take as built.
    monkeypatch.setattr(build_default, "build_default_net", lambda: SmallEmbedder("negated"))
    monkeypatch.setattr(build_default, "default_spec", lambda net, **_: small_spec())
    out = tmp_path / "default"
    assert build_default.main(["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "error: export refused" in err and REPORTED_COSINE.search(err)
    assert list(out.iterdir()) == []


class RecordingEmbedder(SmallEmbedder):
    """:class:`SmallEmbedder` that keeps the eager inputs it was given (``(N, 3, H, W)`` float in
    ``[0, 1]``), so a test can see which pixels the gate compared on."""

    def __init__(self) -> None:
        super().__init__()
        self.eager_inputs: list[Tensor] = []

    def embed(self, x: Tensor) -> Tensor:
        if not torch.onnx.is_in_onnx_export():
            self.eager_inputs.append(x.detach().clone())
        return super().embed(x)


def test_the_gate_compares_on_the_contracts_drafted_pixels(tmp_path: Path) -> None:
    # scikit-image's retina.jpg is 1411×1411: at ratio 3 over 32×32 it decodes at 1/8.
    photos = load_parity_photos()
    jpeg = photos[-2]
    spec = dataclasses.replace(small_spec(), jpeg_draft_min_ratio=3.0)
    drafted = preprocess_bytes(jpeg, spec)
    full = preprocess_bytes(jpeg, small_spec())
    assert not np.array_equal(drafted, full)
    net = RecordingEmbedder()
    result = export_embedder(net, spec, tmp_path, photos)
    assert result.parity.min_cosine >= MIN_PARITY_COSINE
    # The last eager call is the gate's reference run on the whole batch.
    seen = (net.eager_inputs[-1] * 255).round().to(torch.uint8).numpy()
    assert seen.shape == (len(photos), 3, *INPUT_HW)
    assert np.array_equal(seen[-2], drafted)
    for photo, pixels in zip(photos, seen, strict=True):
        assert np.array_equal(pixels, preprocess_bytes(photo, spec))
