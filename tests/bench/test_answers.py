"""bench.answers on the tiny artifact and three photos: its ranking, set-query and open-set
figures equal oracles written here from the same JPEG files, embedded by the tiny graph's numpy
twin (tests/tiny_artifact.py) and ranked by brute force."""

from __future__ import annotations

import contextlib
import functools
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from bench import answers as tool
from bench.answer_folders import build_folder, folder_files
from tests.tiny_artifact import TINY_SPEC, reference_embeddings

PHOTOS = ("astronaut", "coffee", "chelsea", "brick")
ALPHA, M, SPLITS = 0.6, 3, 2


def unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def embed(blobs: list[bytes]) -> npt.NDArray[np.float64]:
    return reference_embeddings(np.stack([preprocess_bytes(b, TINY_SPEC) for b in blobs]))


def oracle_rank(
    q: npt.NDArray[np.float64],
    names: list[str],
    galleries: list[npt.NDArray[np.float64]],
    want: str,
    two_stage: bool,
) -> int:
    """0-based place of ``want``: centroid top M, then fused re-ranking, ties by name."""
    cents = [unit(g.sum(axis=0)) for g in galleries]
    by_centroid = sorted(range(len(names)), key=lambda i: (-float(cents[i] @ q), names[i]))
    cand, rest = by_centroid[:M], by_centroid[M:]
    if two_stage:
        fused = {i: ALPHA * float(cents[i] @ q) + (1 - ALPHA) * max(unit(galleries[i]) @ q)
                 for i in cand}  # fmt: skip
        cand = sorted(cand, key=lambda i: (-fused[i], names[i]))
    return [names[i] for i in cand + rest].index(want)


@pytest.fixture(scope="module")
def bench_report(tiny_model_path: Path) -> tool.Report:
    argv = ["--model", str(tiny_model_path), "--photos", *PHOTOS, "--query-views", "2",
            "--splits", str(SPLITS), "--alpha", str(ALPHA), "--candidates", str(M),
            "--no-sweep", "--no-service"]  # fmt: skip
    return tool.run(tool.parse_args(argv))


@pytest.fixture(scope="module")
def bench_json(bench_report: tool.Report) -> dict[str, Any]:
    # Through json, as --json prints it.
    data: dict[str, Any] = json.loads(json.dumps(tool.report_json(bench_report), default=float))
    return data


def test_the_text_report_has_every_section(bench_report: tool.Report) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tool.print_report(bench_report)
    text = out.getvalue()
    for heading in ("1. ranking", "2. set queries", "3. open set", "4. degenerate", "5. service"):
        assert heading in text
    for folder in tool.DEFAULT_FOLDERS:
        assert f"{folder} 1-4 img" in text
    assert "not measured (--no-service)" in text


@functools.cache  # one embedding per folder for the whole module
def folder_oracle(name: str) -> tuple[list[str], list[npt.NDArray[np.float64]], Any]:
    (recipe,) = tool.recipes([name], 1, 2, PHOTOS)
    files = folder_files(recipe)
    g = embed(files.gallery).reshape(len(files.items), recipe.gallery_views, -1)
    q = embed(files.queries).reshape(len(files.items), recipe.query_views, -1)
    return list(files.items), list(g), q


@pytest.mark.parametrize("folder", tool.DEFAULT_FOLDERS)
def test_ranking_and_sets_equal_the_brute_force_oracle(
    bench_json: dict[str, Any], folder: str
) -> None:
    names, galleries, q = folder_oracle(folder)
    rows = {r["folder"]: r for r in bench_json["ranking"]}
    sets = {r["folder"]: r for r in bench_json["sets"]}
    for two_stage, key in ((False, "centroid"), (True, "two_stage")):
        ranks = [oracle_rank(unit(q[i, v]), names, galleries, names[i], two_stage)
                 for i in range(len(names)) for v in range(2)]  # fmt: skip
        r = np.array(ranks, dtype=np.float64)
        assert rows[folder][key]["r1"] == pytest.approx(float((r == 0).mean()))
        assert rows[folder][key]["mrr"] == pytest.approx(float((1 / (r + 1)).mean()))
    singles = []
    for v in (0, 1):
        ranks = [oracle_rank(unit(q[i, v]), names, galleries, names[i], True)
                 for i in range(len(names))]  # fmt: skip
        singles.append(float(np.mean(np.array(ranks) == 0)))
    pair = [oracle_rank(unit(q[i, 0] + q[i, 1]), names, galleries, names[i], True)
            for i in range(len(names))]  # fmt: skip
    assert sets[folder]["pairs"] == len(names)
    assert [sets[folder]["view_a"], sets[folder]["view_b"]] == pytest.approx(singles)
    assert sets[folder]["pair"] == pytest.approx(float(np.mean(np.array(pair) == 0)))


def test_open_set_counts_and_rates(bench_json: dict[str, Any]) -> None:
    rows = {r["folder"]: r for r in bench_json["open_set"]}
    assert set(rows) == {f for f in tool.DEFAULT_FOLDERS} | {
        f"{f} 1-4 img" for f in tool.DEFAULT_FOLDERS
    }
    for name in tool.DEFAULT_FOLDERS:
        names, _, _ = folder_oracle(name)
        n = len(names)
        held = round(0.3 * n)
        row = rows[name]
        # Every split holds out round(0.3 n) items, each with 2 query views.
        assert row["held_out_queries"] == SPLITS * held * 2
        assert row["enrolled_queries"] == SPLITS * (n - held) * 2
        for key in ("tmr", "fmr", "flat_fmr", "auroc_confidence"):
            assert 0.0 <= row[key] <= 1.0
    rule = bench_json["rule"]
    for d in bench_json["degenerate"]:
        assert d["degenerate"] == (
            d["input_std"] < rule["max_flat_std"]
            or d["uniform_cosine"] >= rule["max_uniform_cosine"]
            or d["norm_fraction"] < rule["min_norm_fraction"]
        )
        assert not (d["degenerate"] and d["match"])
        if not d["image"].startswith(("noise", "gradient")):  # uniform, at any size
            assert d["degenerate"], d
    assert bench_json["service"] == {}


def test_auroc_and_flat_threshold_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    pos = np.round(rng.normal(1, 1, 40), 1)  # rounded: ties between the classes
    neg = np.round(rng.normal(0, 1, 30), 1)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert tool.auroc(pos, neg) == pytest.approx(brute)
    t, fmr = tool.flat_fmr_at(pos, neg, 10)
    assert (pos >= t).sum() >= 10 and (pos > t).sum() < 10
    assert fmr == pytest.approx(float(np.mean(neg >= t)))


def test_logistic_fit_recovers_known_weights() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20000, 3))
    logit = x @ np.array([2.0, 0.5, -1.0]) - 0.5
    y = (rng.random(20000) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    weights, _offset = tool.fit_logistic(x, y)
    # Class balancing moves the offset, never the weights of a logistic model.
    np.testing.assert_allclose(weights, [2.0, 0.5, -1.0], rtol=0.1)


def test_open_set_runner_ups_against_brute_force(tiny_model_path: Path) -> None:
    """Each query's top result and its runner-up scores (the best other of the M candidates,
    on the centroid and on the image score), recomputed by loops over the enrolled items."""
    embedder = OnnxEmbedder(tiny_model_path, allow_gpu=False, allow_spinning=False)
    (recipe,) = tool.recipes(["quarters-2x2"], 1, 2, PHOTOS)
    folder = build_folder(embedder, recipe)
    s = tool.open_set_samples(folder, 1, 0.3, ALPHA, M)
    n = len(folder.items)
    held = set(np.random.default_rng((0, 7)).permutation(n)[: round(0.3 * n)].tolist())
    enrolled = [i for i in range(n) if i not in held]
    views = {i: unit(folder.gallery[folder.gallery_item == i].astype(np.float64)) for i in enrolled}
    cents = {i: unit(folder.gallery[folder.gallery_item == i].astype(np.float64).sum(0))
             for i in enrolled}  # fmt: skip
    for j, (raw, item) in enumerate(zip(folder.queries, folder.query_item, strict=True)):
        q = unit(raw.astype(np.float64))
        cand = sorted(enrolled, key=lambda i: (-float(cents[i] @ q), folder.items[i]))[:M]
        image = {i: float(max(views[i] @ q)) for i in cand}
        top = min(cand, key=lambda i: (-(ALPHA * float(cents[i] @ q) + (1 - ALPHA) * image[i]),
                                       folder.items[i]))  # fmt: skip
        rest = [i for i in cand if i != top]
        assert s.centroid_score[j] == pytest.approx(float(cents[top] @ q), abs=1e-5)
        assert s.other_centroid_score[j] == pytest.approx(
            max(float(cents[i] @ q) for i in rest), abs=1e-5
        )
        # Image rows are float16 in the gallery, as the service keeps them.
        assert s.other_image_score[j] == pytest.approx(max(image[i] for i in rest), abs=2e-3)
        assert s.label[j] == (0 if item in held else (1 if top == item else -1))
