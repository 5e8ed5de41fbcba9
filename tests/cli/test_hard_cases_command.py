"""``export-hard-cases`` as users run it (a fresh interpreter, RETRIEVAL_* settings) on the data
of a real service: its pairs, suspects and leave-one-out misses against a brute force over the
store's embeddings, the files byte for byte the enrolled originals, the dataset folder one
``model.data.folder_items`` reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from app.hard_cases import DEFAULT_PAIRS
from app.settings import Settings
from cli.hard_cases_command import DEFAULT_PAIRS as CLI_DEFAULT_PAIRS
from model.data.folder_items import read_folder_items
from store.sqlite_store import SqliteStore
from tests.cli.test_maintenance_commands import cli, serving
from tests.tiny_artifact import write_tiny_artifact

ITEMS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def files(views: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


def test_the_export_holds_the_brute_force_hard_cases_as_a_dataset(
    tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    model = write_tiny_artifact(tmp_path / "model")
    data = tmp_path / "data"
    sent: dict[str, bytes] = {}
    with serving(model, data) as client:
        for name in ITEMS:
            views = photo_views[name][:3]
            r = client.post(f"/items/{name}/images", files=files(views))
            assert r.status_code == 201, r.text
            sent.update(zip(r.json()["image_ids"], views, strict=True))
        # A photo of chelsea under astronaut (a suspect and a miss), and a one-image item.
        for item, view in (
            ("astronaut", photo_views["chelsea"][4]),
            ("solo", photo_views["china"][0]),
        ):
            r = client.post(f"/items/{item}/images", files=files([view]))
            sent[r.json()["image_ids"][0]] = view
    out = tmp_path / "hard"
    code, stdout, stderr = cli(model, data, "export-hard-cases", "--out", str(out), "--pairs", "3")
    assert code == 0, stderr
    manifest = json.loads((out / "hard_cases.json").read_text())

    store = SqliteStore(Settings(model_path=model, data_dir=data, redis_url=None).sqlite_path)
    try:
        states = {s.item_id: s for s in store.iter_item_states()}
        images = store.item_images(list(states))
    finally:
        store.close()
    cents = {i: unit(s.embedding_sum) for i, s in states.items()}
    # Pairs: every pair's centroid cosine, the 3 highest among each item's nearest other.
    nearest = {}
    for a in cents:
        b = max((x for x in cents if x != a), key=lambda x: (float(cents[a] @ cents[x]), x))
        nearest[tuple(sorted((a, b)))] = float(cents[a] @ cents[b])
    expected = sorted(nearest.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    got = [((p["item_a"], p["item_b"]), p["cosine"]) for p in manifest["confusable_pairs"]]
    assert [g[0] for g in got] == [e[0] for e in expected]
    np.testing.assert_allclose([g[1] for g in got], [e[1] for e in expected], atol=1e-5)
    # Misses: another item's centroid at least as near as the own one without the image.
    misses = []
    for item, records in images.items():
        if len(records) < 2:
            continue
        for j, r in enumerate(records):
            rest = unit(
                np.sum(
                    [x.embedding.astype(np.float64) for k, x in enumerate(records) if k != j],
                    axis=0,
                )
            )
            q = unit(r.embedding.astype(np.float64))
            other = max(float(q @ c) for i, c in cents.items() if i != item)
            if other >= float(q @ rest):
                misses.append((item, r.image_id))
    assert sorted(
        (m["item_id"], m["image_id"]) for m in manifest["leave_one_out_misses"]
    ) == sorted(misses)
    stray = next(i for i, v in sent.items() if v == photo_views["chelsea"][4])
    assert ("astronaut", stray) in misses
    assert [s["image_id"] for s in manifest["suspects"]["astronaut"]] == [stray]
    # Files: the suspect under suspects/, every other image of a named item under dataset/.
    assert (out / "suspects" / "astronaut" / f"{stray}.jpg").read_bytes() == sent[stray]
    named = {i for pair in expected for i in pair[0]} | {m[0] for m in misses} | {"astronaut"}
    flagged = {s["image_id"] for listed in manifest["suspects"].values() for s in listed}
    for item in named:
        for r in images[item]:
            folder = "suspects" if r.image_id in flagged else "dataset"
            path = out / folder / item / f"{r.image_id}.jpg"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == r.content_hash
    assert {p.name for p in (out / "dataset").iterdir()} == named
    split = read_folder_items(out / "dataset", holdout_fraction=0.0)
    assert {s.item for s in split.train} == named
    assert "leave-one-out misses" in stdout and "confusable pairs" in stdout
    assert DEFAULT_PAIRS == CLI_DEFAULT_PAIRS


def test_a_non_empty_output_folder_is_refused(tmp_path: Path) -> None:
    model = write_tiny_artifact(tmp_path / "model")
    with serving(model, tmp_path / "data"):
        pass
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    code, _, stderr = cli(
        model, tmp_path / "data", "export-hard-cases", "--out", str(tmp_path / "out")
    )
    assert code != 0 and "not empty" in stderr
