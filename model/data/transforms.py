"""PIL RGB image → ``(3, H, W)`` ``float32`` tensor in [0, 1], for training and evaluation.

Normalisation is not done here: it is the network's first layer
(:class:`model.modeling.input_normalization.InputNormalization`), so the exported graph carries
it and the service only resizes.

Resizing is the service's (:func:`artifact.image_decode.resize_rgb`): the whole image to
``(H, W)`` with PIL's bilinear filter, no crop, aspect ratio not kept. ``eval_transform(img)``
equals ``to_input_array(img, spec) / 255`` exactly.

The training augmentation is the reid-strong-baseline one the CTL reference uses: resize,
horizontal flip (0.5), pad 10 px (black) and random crop back to size, random erasing (0.5).
Random erasing differs in two recorded ways:

- it runs in [0, 1] pixel space and fills with the network's normalisation mean, which is 0
  after normalisation. The reference erases after normalising with the ImageNet mean *values*
  (0.485, 0.456, 0.406), i.e. ``mean + (0.485, 0.456, 0.406) * std`` in pixel space: grey either
  way, not identical;
- area fraction in [0.02, 0.4] and aspect ratio in [0.3, 1/0.3] as the reference's
  ``sl, sh, r1``, but torchvision draws the ratio log-uniformly (the reference: uniformly).
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T

from model.modeling.backbones.imagenet_stats import IMAGENET_MEAN

# reid-strong-baseline / CTL defaults (INPUT.PADDING, INPUT.PROB, INPUT.RE_PROB).
DEFAULT_PAD = 10
DEFAULT_FLIP_P = 0.5
DEFAULT_ERASE_P = 0.5
# reid-strong-baseline RandomErasing(sl=0.02, sh=0.4, r1=0.3).
ERASE_SCALE = (0.02, 0.4)
ERASE_RATIO = (0.3, 1 / 0.3)


def _resize(size_hw: tuple[int, int]) -> T.Resize:
    # On PIL images torchvision calls Image.resize((W, H), BILINEAR): resize_rgb's exact call.
    return T.Resize(tuple(size_hw), interpolation=T.InterpolationMode.BILINEAR)


def eval_transform(size_hw: tuple[int, int]) -> T.Compose:
    """Resize to ``size_hw = (H, W)`` and scale to [0, 1]: ``(3, H, W)`` ``float32``."""
    return T.Compose([_resize(size_hw), T.ToTensor()])


def train_transform(
    size_hw: tuple[int, int],
    pad: int = DEFAULT_PAD,
    flip_p: float = DEFAULT_FLIP_P,
    erase_p: float = DEFAULT_ERASE_P,
    fill_mean: Sequence[float] = IMAGENET_MEAN,
) -> T.Compose:
    """Reference augmentation (see the module docstring): ``(3, H, W)`` ``float32`` in [0, 1].

    ``fill_mean`` is the erasing fill, 3 values in [0, 1]: pass the network's input mean.
    """
    if len(fill_mean) != 3:
        raise ValueError(f"fill_mean needs 3 values (R, G, B), got {tuple(fill_mean)}")
    steps: list[object] = [_resize(size_hw), T.RandomHorizontalFlip(flip_p)]
    if pad > 0:
        steps += [T.Pad(pad, fill=0), T.RandomCrop(tuple(size_hw))]
    steps.append(T.ToTensor())
    if erase_p > 0:
        steps.append(
            T.RandomErasing(
                p=erase_p, scale=ERASE_SCALE, ratio=ERASE_RATIO, value=[float(v) for v in fill_mean]
            )
        )
    return T.Compose(steps)
