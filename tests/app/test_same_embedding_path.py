"""The same bytes give the same pixels and embeddings through the service and the training kit's
evaluation code (ONNX and PyTorch paths), odd image modes included."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artifact.image_decode import decode_image, to_input_array
from model.data.image_dataset import ImageDataset
from model.data.sample import Sample
from model.data.sample_photos import load_photo
from model.data.transforms import eval_transform
from model.evaluation.embed_split import onnx_embedder, torch_embedder
from model.exporter.default_embedder import DEFAULT_INPUT_SIZE, build_default_net
from tests.app.conftest import ServiceFactory


def odd_mode_files(folder: Path) -> dict[str, Path]:
    """One real photo saved in every awkward way the decoder must handle."""
    photo = load_photo("coffee").resize((300, 200))
    grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    rgba = photo.convert("RGBA")
    alpha = np.asarray(rgba).copy()
    alpha[:, :100, 3] = 0  # a transparent band: must become white
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° CCW to display
    variants: dict[str, tuple[Image.Image, str, dict[str, object]]] = {
        "rgb.jpg": (photo, "JPEG", {"quality": 92}),
        "grey16.png": (Image.fromarray(grey), "PNG", {}),
        "rgba.png": (Image.fromarray(alpha, mode="RGBA"), "PNG", {}),
        "palette.png": (photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", {}),
        "cmyk.jpg": (photo.convert("CMYK"), "JPEG", {"quality": 95}),
        "la.png": (photo.convert("LA"), "PNG", {}),
        "rotated.jpg": (photo, "JPEG", {"exif": exif.tobytes()}),
        "anim.gif": (photo.convert("P"), "GIF", {}),
        "bmp.bmp": (photo, "BMP", {}),
        "webp.webp": (photo, "WEBP", {"quality": 90}),
    }
    out = {}
    for name, (img, fmt, kw) in variants.items():
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        path = folder / name
        path.write_bytes(buf.getvalue())
        out[name] = path
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return odd_mode_files(tmp_path_factory.mktemp("odd"))


def test_training_pixels_equal_service_pixels(files: dict[str, Path]) -> None:
    samples = [Sample(path=str(p), item=name) for name, p in files.items()]
    dataset = ImageDataset(
        samples, {s.item: 0 for s in samples}, eval_transform(DEFAULT_INPUT_SIZE)
    )
    from artifact.preprocess_spec import PreprocessSpec

    spec = PreprocessSpec(
        input_size=DEFAULT_INPUT_SIZE, embedding_dim=1, model_name="x", model_version="1"
    )
    for i, sample in enumerate(samples):
        tensor = dataset[i][0]
        service = to_input_array(decode_image(Path(sample.path).read_bytes()), spec)
        assert torch.equal(tensor, torch.from_numpy(service).float() / 255), sample.item
    # And the odd modes decode to what they should show.
    white_band = to_input_array(decode_image(files["rgba.png"].read_bytes()), spec)
    assert white_band[:, :, :70].min() == 255  # 100/300 of the width was transparent
    rotated = decode_image(files["rotated.jpg"].read_bytes())
    assert rotated.size == (200, 300)
    grey = np.asarray(decode_image(files["grey16.png"].read_bytes()))
    assert grey.max() > 200 and np.array_equal(grey[..., 0], grey[..., 2])  # rescaled, not clipped


def test_service_embeddings_equal_evaluation_embeddings(
    service_factory: ServiceFactory, files: dict[str, Path], default_model_path: Path
) -> None:
    names = list(files)
    with service_factory(model_path=default_model_path) as client:
        for name in names:
            r = client.post(
                f"/items/{name}/images", files={"images": (name, files[name].read_bytes())}
            )
            assert r.status_code == 201, r.text
        store = client.app.state.service.retriever.store  # type: ignore[attr-defined]
        stored = {rec.item_id: rec.embedding for rec in store.iter_images()}
    samples = [Sample(path=str(files[n]), item=n) for n in names]
    via_onnx = onnx_embedder(default_model_path)(samples)
    via_torch = torch_embedder(build_default_net(), DEFAULT_INPUT_SIZE)(samples)
    for i, name in enumerate(names):
        # Same runtime, same pixels: identical up to batch-size kernel differences.
        np.testing.assert_allclose(stored[name], via_onnx[i], rtol=0, atol=1e-4, err_msg=name)
        cos = float(
            stored[name]
            @ via_torch[i]
            / np.linalg.norm(stored[name])
            / np.linalg.norm(via_torch[i])
        )
        assert cos > 0.9999, (name, cos)
