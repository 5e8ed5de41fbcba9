"""bench.jpeg_draft_quality on the tiny artifact and small photos: its cosines, counts and
recalls equal oracles written here (the tiny graph's numpy twin, a brute-force centroid
ranking), and it prints the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import PreprocessSpec
from bench import jpeg_draft_quality as tool
from bench.large_photos import build_large_photo_set
from tests.tiny_artifact import TINY_SPEC, reference_embeddings, write_tiny_artifact

DRAFT = tool.with_draft(TINY_SPEC, 2.0)
# ≈ 160×125 pixels: at least 2 × the tiny model's 32×32, so ratio 2 drafts every one.
SMALL_MP = 0.02


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    return OnnxEmbedder(write_tiny_artifact(tmp_path_factory.mktemp("tiny")), allow_gpu=False)


def oracle_embeddings(blobs: list[bytes], spec: PreprocessSpec) -> npt.NDArray[np.float64]:
    return reference_embeddings(np.stack([preprocess_bytes(b, spec) for b in blobs]))


def unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def test_decode_comparison_equals_the_oracle(embedder: OnnxEmbedder) -> None:
    blobs = build_large_photo_set(1, megapixels=SMALL_MP).all_views()
    got = tool.compare_decodes(embedder, blobs, 2.0, repeats=1)
    full, draft = oracle_embeddings(blobs, TINY_SPEC), oracle_embeddings(blobs, DRAFT)
    cos = np.sum(unit(full) * unit(draft), axis=1)
    assert got.photos == len(blobs) == 8
    assert got.drafted == sum(
        not np.array_equal(preprocess_bytes(b, TINY_SPEC), preprocess_bytes(b, DRAFT))
        for b in blobs
    )
    assert got.drafted == 8
    assert got.cosine_mean == pytest.approx(cos.mean(), abs=1e-6)
    assert got.cosine_min == pytest.approx(cos.min(), abs=1e-6)
    assert got.cosine_min < 1 - 1e-6  # the two decodes really differ
    assert got.full_ms > 0 and got.draft_ms > 0
    assert got.speedup == got.full_ms / got.draft_ms


def brute_force_recall(
    folder: Path, spec: PreprocessSpec, ks: tuple[int, ...] = (1, 5)
) -> dict[int, float]:
    """Every query against every item centroid (normalised sum of raw embeddings), best
    first, equal scores by item id."""

    def split(name: str) -> tuple[list[bytes], list[str]]:
        paths = sorted((folder / name).glob("*/*.jpg"))
        return [p.read_bytes() for p in paths], [p.parent.name for p in paths]

    (g_blobs, g_items), (q_blobs, q_items) = split("gallery"), split("query")
    gallery = oracle_embeddings(g_blobs, spec)
    items = sorted(set(g_items))
    centroids = unit(np.stack([gallery[[i == it for i in g_items]].sum(0) for it in items]))
    scores = unit(oracle_embeddings(q_blobs, spec)) @ centroids.T
    hits = dict.fromkeys(ks, 0)
    for row, item in zip(scores, q_items, strict=True):
        ranked = sorted(range(len(items)), key=lambda j: (-row[j], items[j]))
        for k in ks:
            hits[k] += item in [items[j] for j in ranked[:k]]
    return {k: hits[k] / len(q_items) for k in ks}


def test_folder_recall_equals_brute_force(embedder: OnnxEmbedder, tmp_path: Path) -> None:
    root = tool.write_large_folder(
        tmp_path, names=["astronaut", "coffee", "chelsea"], grid=(2, 2),
        gallery_views=2, query_views=2, megapixels=SMALL_MP,
    )  # fmt: skip
    got = tool.folder_recall(embedder, root, 2.0)
    assert (got.items, got.queries, got.images, got.drafted) == (12, 24, 48, 48)
    for spec, recall in ((TINY_SPEC, got.full), (DRAFT, got.draft)):
        want = brute_force_recall(root, spec)
        assert recall == pytest.approx(want, abs=1e-12)
    assert got.r1_change == got.draft[1] - got.full[1]


@pytest.mark.parametrize(("change", "within"), [(0.005, True), (-0.005, True), (0.00625, False)])
def test_tolerance_is_inclusive(change: float, within: bool) -> None:
    recall = tool.FolderRecall(
        queries=160, items=80, drafted=1, images=2, full={1: 0.5, 5: 1.0},
        draft={1: 0.5 + change, 5: 1.0},
    )  # fmt: skip
    assert recall.within_tolerance is within


SMALL_RUN = [
    "--photos", "astronaut", "coffee", "--grid", "1", "1",
    "--gallery-views", "1", "--query-views", "1", "--views-per-photo", "1",
    "--megapixels", str(SMALL_MP), "--repeats", "1", "--ratio", "2",
]  # fmt: skip


def test_main_prints_figures_and_verdict(
    embedder: OnnxEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--model", str(embedder.path), *SMALL_RUN, "--folder-megapixels", str(SMALL_MP)]
    assert tool.main(args) == 0
    out = capsys.readouterr().out
    assert "jpeg_draft_min_ratio = 2: draft vs full decode" in out
    assert "8 x 0.02 MP        8" in out
    assert "2 items, 2 queries, draft applied to 4 of 4 images" in out
    assert "Recall@1: full" in out and "Recall@5: full" in out
    assert "(|change| <= 0.005): PASS" in out or "(|change| <= 0.005): MISS" in out


def test_a_folder_too_small_for_the_draft_says_so(
    embedder: OnnxEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    # ≈ 35×28 pixels, under 2 × 32: nothing to measure, and the report must show it.
    args = ["--model", str(embedder.path), *SMALL_RUN, "--folder-megapixels", "0.001"]
    assert tool.main([*args, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["ratios"]
    folder = entry["folder"]
    assert folder["drafted"] == 0 and folder["images"] == 4
    assert folder["full"] == folder["draft"] and folder["r1_change"] == 0


def test_ratio_below_two_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        tool.main(["--ratio", "1.5"])
    assert caught.value.code == 2
    assert "ratio must be a finite number >= 2" in capsys.readouterr().err
