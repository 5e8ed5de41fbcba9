"""bench.migration_under_load run as users run it, on the tiny model at a tiny size: the
re-embedding in the service under the open load, switch, lost-enrollment check and rollback
comparison with a reference service; and the re-versioned twin it migrates to by default."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from artifact.onnx_embedder import OnnxEmbedder
from bench import migration_under_load as tool
from bench.reversioned_model import write_reversioned
from tests.tiny_artifact import tiny_spec, write_tiny_artifact


def test_a_run_migrates_under_load_loses_nothing_and_rolls_back_to_the_same_answers(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    new_model = write_tiny_artifact(tmp_path / "new", tiny_spec("2"), seed=7)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = tool.main(
            [
                f"--model={tiny_model_path}",
                f"--new-model={new_model}",
                "--images=100",
                "--saturation-s=1",
                "--window-s=1.5",
                "--switch-window-s=1",
                "--compare-items=10",
                "--queries=6",
                "--clients=4",
            ]
        )
    text = out.getvalue()
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    # No search failed but by the admission queue's shedding (503 with Retry-After), which a
    # burst on these loaded shared cores can cause: counted as failed, its verdict the machine's.
    searches = re.search(
        r"failed searches during the migration +0 +(\d+) of (\d+)( \['503'\])? +(PASS|MISS)", text
    )
    assert searches is not None and int(searches.group(2)) > 0, text
    assert (searches.group(1) == "0") == (searches.group(4) == "PASS"), text
    assert re.search(r"lost enrollments after the switch +0 +0 \(of 20 seeded items and", text)
    # Writes came during the migration (checked and replayed), and the comparison saw them
    # missing from the reference before the replay.
    acked = re.search(r"and (\d+) acknowledged during the migration", text)
    assert acked is not None and int(acked.group(1)) > 0, text
    identical = lines["after rollback, answers = a service that never migrated"]
    before = re.search(r"\((\d+) differed before the replay\)", identical)
    assert before is not None and int(before.group(1)) > 0, identical
    assert identical.endswith("PASS"), identical
    # The p99 verdict is the machine's (2 shared cores): only its figures are checked here.
    ratio = re.search(r"([\d.]+) / ([\d.]+) ms = ([\d.]+)x +(PASS|MISS)$", text, re.M)
    assert ratio is not None, text
    passed = ratio.group(4) == "PASS" and searches.group(4) == "PASS"
    assert status == (0 if passed else 1)


def test_the_reversioned_twin_embeds_as_the_original_under_another_version(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    twin = OnnxEmbedder(write_reversioned(tiny_model_path, tmp_path / "twin"), allow_gpu=False)
    original = OnnxEmbedder(tiny_model_path, allow_gpu=False)
    assert twin.spec.model_version == original.spec.model_version + "-bench"
    assert twin.spec.model_name == original.spec.model_name
    batch = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    np.testing.assert_array_equal(twin.embed(batch), original.embed(batch))
