"""Transforms: the eval transform is exactly the service's pixels / 255; the training
augmentation's pieces checked against oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from artifact.image_decode import to_input_array
from artifact.preprocess_spec import PreprocessSpec
from model.data.transforms import ERASE_SCALE, eval_transform, train_transform
from model.modeling.backbones.imagenet_stats import IMAGENET_MEAN
from tests.model.data.photo_files import photo


def spec(size_hw: tuple[int, int]) -> PreprocessSpec:
    return PreprocessSpec(input_size=size_hw, embedding_dim=8, model_name="t", model_version="1")


def service_pixels(img: Image.Image, size_hw: tuple[int, int]) -> torch.Tensor:
    return torch.from_numpy(to_input_array(img, spec(size_hw)).astype(np.float32) / 255)


@pytest.mark.parametrize("size_hw", [(256, 128), (224, 224), (31, 77)])
def test_eval_transform_equals_service_pixels(size_hw: tuple[int, int]) -> None:
    images = [photo("astronaut", 300), photo("coffee", 90)]
    images += [Image.fromarray(a) for a in load_sample_images().images]
    same_size = photo("chelsea", 400).resize((size_hw[1], size_hw[0]))
    for img in [*images, same_size]:
        out = eval_transform(size_hw)(img)
        assert out.dtype == torch.float32 and out.shape == (3, *size_hw)
        assert torch.equal(out, service_pixels(img, size_hw))


def test_flip_alone_is_the_mirrored_eval_image() -> None:
    img = photo("rocket", 120)
    t = train_transform((64, 32), pad=0, flip_p=1.0, erase_p=0.0)
    assert torch.equal(t(img), service_pixels(img, (64, 32)).flip(-1))


def test_pad_and_crop_is_a_shift_with_black_border() -> None:
    img = photo("chelsea", 120)
    size = (48, 40)
    t = train_transform(size, pad=10, flip_p=0.0, erase_p=0.0)
    padded = torch.nn.functional.pad(service_pixels(img, size), (10, 10, 10, 10))
    torch.manual_seed(0)
    offsets = set()
    for _ in range(20):
        out = t(img)
        matches = [
            (dy, dx)
            for dy in range(21)
            for dx in range(21)
            if torch.equal(out, padded[:, dy : dy + size[0], dx : dx + size[1]])
        ]
        assert matches, "output is not a window of the zero-padded resized image"
        offsets.update(matches)
    assert len(offsets) > 5  # the crop position really varies


def test_erasing_fills_one_rectangle_with_the_mean() -> None:
    img = photo("coffee", 200)
    size = (64, 64)
    fill = (0.25, 0.5, 0.75)  # not a colour the photo has over a whole rectangle
    t = train_transform(size, pad=0, flip_p=0.0, erase_p=1.0, fill_mean=fill)
    clean = service_pixels(img, size)
    torch.manual_seed(1)
    for _ in range(10):
        out = t(img)
        changed = (out != clean).any(dim=0)
        ys, xs = torch.nonzero(changed, as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        box = out[:, y0:y1, x0:x1]
        assert torch.equal(box, torch.tensor(fill).view(3, 1, 1).expand_as(box))
        area = (y1 - y0) * (x1 - x0) / (size[0] * size[1])
        # Pixels already equal to the fill would shrink the box; the photo has none.
        assert ERASE_SCALE[0] * 0.9 <= area <= ERASE_SCALE[1] * 1.1
        outside = torch.ones_like(changed)
        outside[y0:y1, x0:x1] = False
        assert torch.equal(out[:, outside], clean[:, outside])


def test_training_output_range_and_default_fill() -> None:
    t = train_transform((64, 32))
    torch.manual_seed(2)
    for _ in range(5):
        out = t(photo("astronaut", 100))
        assert out.shape == (3, 64, 32) and out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    erase = t.transforms[-1]
    assert list(erase.value) == list(IMAGENET_MEAN)
    with pytest.raises(ValueError, match="fill_mean"):
        train_transform((64, 32), fill_mean=(0.5,))
