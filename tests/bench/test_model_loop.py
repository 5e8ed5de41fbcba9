"""bench.model_loop --tiny end to end: the real commands (service, enroll-folder, model.train on
the service store, model.export, migrate, the service again on the new model) on 9 items, and
the printed table holds both models' query and leave-one-out figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.model_loop import RUN_NAME, main

# The tiny artifact serves and the tiny backbone is fine-tuned: the plumbing is under test, and
# EfficientNet-Lite0 would only add minutes of import, training and export.
TINY_BACKBONE = ("model.backbone=tiny_cnn", "model.backbone_kwargs={}", "data.input_size=[64,64]")


def test_tiny_loop_prints_both_models_side_by_side(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tiny", "--work", str(tmp_path), "--model", str(tiny_model_path), *TINY_BACKBONE]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "the loop: 9 items, 27 gallery images" in out and "9 query images" in out, out
    assert "default: tiny" in out and f"migrated: {RUN_NAME}" in out, out
    number = r"\s+([01]\.\d{4})"
    for row in ("query R@1", "query MRR", "gallery LOO R@1", "gallery LOO MRR"):
        assert re.search(rf"\| {row}\s+\|{number} \|{number} \|\s+[+-]\d\.\d{{4}} \|", out), row
    assert re.search(r"query R@1 gain: [+-]\d\.\d{4} — (MET|NOT met) \(target >= \+0\.05\)", out)
    assert re.search(r"LOO ranks the two models (NOT )?in the same order as the query R@1", out)
    assert "(queries: 9 / 9 searched; LOO: 27 / 27 gallery images)" in out, out
    stages = ("enroll gallery", "fine-tune", "export", "migrate (re-embed)", "queries (migrated)")
    for stage in stages:
        assert re.search(
            rf"^  {re.escape(stage)} +\d+\.\d s$", out.rsplit("wall time", 1)[1], re.M
        ), stage
    record = json.loads((tmp_path / "loop.json").read_text())
    assert record["before"]["model"] != record["after"]["model"] == RUN_NAME
    # The service's GET /quality agrees with the migration's own comparison of the two stores.
    switch = (tmp_path / "logs" / "switch.log").read_text()
    loo = re.search(r"^R@1\s+(\d\.\d{4})\s+(\d\.\d{4})", switch, re.M)
    assert loo is not None, switch
    assert float(loo[1]) == pytest.approx(record["before"]["loo_r_at_1"], abs=1e-4)
    assert float(loo[2]) == pytest.approx(record["after"]["loo_r_at_1"], abs=1e-4)
