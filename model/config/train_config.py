"""The training configuration: one YAML file plus dotted ``key=value`` overrides, read here only.

Defaults are the CTL reference recipe (mikwieczorek/centroids-reid, ``configs/256_resnet50.yml``
and ``train_ctl_model.py``, itself built on reid-strong-baseline's "Bag of Tricks" settings) for
Market-1501. Everything downstream receives explicit constructor arguments built from these
dataclasses by :func:`model.engine.trainer_builder.build_trainer`; nothing reads the config
globally.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The configuration file or an override is malformed or names an unknown key."""


@dataclass
class DataConfig:
    """Which dataset, how it is read, sampled and augmented."""

    # A name in model.engine.registries.DATASET_READERS: market1501, dukemtmc, coco_pairs,
    # folder, service_store (a service's gallery: its items and kept originals).
    dataset: str = "market1501"
    root: str = "data/market1501"
    # coco_pairs only: JSON files relative to ``root`` (the CTL reference's DeepFashion layout).
    train_json: str = ""
    query_json: str = ""
    gallery_json: str = ""
    image_dir: str = ""
    # folder and service_store: share of items held out for evaluation (by a SHA-1 of the
    # item's name) and query images per held-out item.
    holdout_fraction: float = 0.2
    query_per_item: int = 1
    # service_store only: the service's store, its SQLite file (<data_dir>/store.sqlite3) or a
    # Redis URL with the service's namespace (RETRIEVAL_REDIS_NAMESPACE), and its blob
    # directory (<data_dir>/blobs; empty: "blobs" beside the SQLite file).
    store: str = ""
    store_namespace: str = "cr"
    blobs: str = ""
    # (H, W). 256×128 is the reference's re-ID size ("S"); its fashion runs use 320×320 ("L").
    input_size: tuple[int, int] = (256, 128)
    # P items × K images per batch: reference Market/Duke 16 × 4.
    p: int = 16
    k: int = 4
    # Reference augmentation (reid-strong-baseline INPUT.*): pad 10, flip 0.5, erasing 0.5.
    pad: int = 10
    flip_p: float = 0.5
    erase_p: float = 0.5
    num_workers: int = 4
    eval_batch_size: int = 128


@dataclass
class ModelConfig:
    """Which network: a name in ``MODELS`` (bnneck, two_head) and its backbone."""

    name: str = "bnneck"
    # A name in model.modeling.backbones.registry.BACKBONES: resnet50, resnet50_ibn_a,
    # efficientnet_lite0 (the service's default model), tiny_cnn.
    backbone: str = "resnet50"
    # Passed to the backbone constructor, e.g. {last_stride: 1, weights_path: ...} for the
    # ResNets, {pretrained: false} for efficientnet_lite0; an option the backbone does not take
    # is an error naming the ones it does. Empty by default, so any backbone trains by name
    # alone: each constructor's defaults are the reference's (ResNet last stride 1,
    # MODEL.LAST_STRIDE; Lite0 with its packaged ImageNet weights).
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    # Fine-tuning: freeze_backbone leaves every backbone parameter as it is (no gradient, and
    # its batch-norm layers in eval mode); freeze_backbone_bn keeps only the backbone's
    # batch-norm layers in eval mode (running statistics frozen, affine weights still trained),
    # which is what made fine-tuning a pretrained backbone on P×K = 32-image batches pay off
    # (issue 13's probe: +3.3 points of centroid mAP where re-estimated statistics lost points).
    freeze_backbone: bool = False
    freeze_backbone_bn: bool = False
    # bnneck only: the exported embedding, "bn_neck" (the reference's) or "features" (the pooled
    # features before the neck, what the metric losses train; the neck's per-dimension
    # standardisation cost up to 1.9 points of centroid mAP fine-tuning Lite0 at 1e-4).
    embedding: str = "bn_neck"
    # two_head only (Taha et al. use a 256-d embedding head); "pooled" or "flatten".
    embedding_dim: int = 256
    head: str = "pooled"


@dataclass
class LossConfig:
    """Which loss recipe (a name in ``LOSS_RECIPES``: ctl, hpl, ranking_regularizer), its knobs."""

    recipe: str = "ctl"
    # Reference SOLVER.MARGIN = 0.5 (triplet and centroid triplet).
    margin: float = 0.5
    # Reference MODEL.IF_LABELSMOOTH on, epsilon 0.1.
    label_smoothing: float = 0.1
    # Reference SOLVER.CENTER_LOSS_WEIGHT = 5e-4 and SOLVER.CENTER_LR = 0.5 (plain SGD).
    center_weight: float = 5e-4
    center_lr: float = 0.5
    # Proxy parameters learn ×100 faster than the network (Kim et al., Proxy Anchor, CVPR 2020).
    proxy_lr_multiplier: float = 100.0
    # Per-term weight overrides by term name (ctl: cross_entropy, triplet, center,
    # centroid_triplet; hpl: hpl; ranking_regularizer: cross_entropy, triplet), applied over
    # the recipe's own weights. Weight 0 switches a term off: it is not in the loss, and its
    # optimiser groups and state are not either. An unknown term name is an error.
    weights: dict[str, float] = field(default_factory=dict)
    # Extra keyword arguments for recipes other than ctl (e.g. {base: proxy_anchor} for hpl,
    # {lam: 1.0, margin: 0.2, mining: batch_hard} for ranking_regularizer).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SolverConfig:
    """Adam with coupled (L2) weight decay and a warm-up multi-step schedule, stepped per epoch."""

    # Reference: 120 epochs, base lr 3.5e-4 (re-ID) / 1e-4 (fashion), weight decay 5e-4,
    # warm-up 10 epochs from 0.1×, ×0.1 at epochs 40 and 70.
    epochs: int = 120
    base_lr: float = 3.5e-4
    weight_decay: float = 5e-4
    warmup_epochs: int = 10
    warmup_factor: float = 0.1
    milestones: tuple[int, ...] = (40, 70)
    gamma: float = 0.1
    # The backbone's parameters learn at base_lr × this (its own optimiser group); the neck,
    # the heads and the losses' groups are unaffected. 1 = one lr for the whole network.
    backbone_lr_multiplier: float = 1.0


@dataclass
class TrainConfig:
    """A whole run. ``output_dir`` holds checkpoints, ``metrics.csv`` and TensorBoard events."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    seed: int = 0
    output_dir: str = "runs/market1501_r50"
    # Name written into exported models' contracts; empty → the output directory's name.
    run_name: str = ""
    # Held-out evaluation (decides best.pt) and last.pt every N epochs; both also after the last.
    # solver.epochs = 0 evaluates the untrained network and writes it as last.pt and best.pt
    # (epoch 0), so its score is the starting point a run is compared with.
    eval_every: int = 10
    # The held-out metric whose maximum picks best.pt, a key the held-out evaluation reports:
    # centroid/mAP (the CTL paper's headline number), centroid/rank1, instance/mAP,
    # instance/rank1, ... A key the evaluation does not report stops the run at its first
    # evaluation, listing the keys it does report.
    best_metric: str = "centroid/mAP"
    checkpoint_every: int = 10
    keep_epoch_checkpoints: bool = False
    # Mixed precision is used only when training on CUDA (fp16 autocast + GradScaler).
    amp: bool = True
    # "auto": CUDA when available (the LOCAL_RANK device under torchrun), else CPU.
    device: str = "auto"
    # Progress bar (rank 0 only).
    progress: bool = True
    # Without the bar (progress: false, e.g. in logs), one line every N batches with the running
    # loss and images/s; 0 = none.
    log_every: int = 20
    # A re-run into an output_dir that already holds a last.pt: "check" resumes it when the
    # config is the same apart from run-control keys (solver.epochs, progress, log_every,
    # eval_every, checkpoint_every, keep_epoch_checkpoints, device, data.num_workers,
    # data.eval_batch_size, existing_output) and otherwise stops, naming the keys that differ;
    # "resume" resumes anyway (the differing keys are logged, the new values apply from here);
    # "overwrite" deletes the run's checkpoints, metrics.csv and TensorBoard events and starts
    # over. model.train --resume / --overwrite set it.
    existing_output: str = "check"

    @property
    def name(self) -> str:
        return self.run_name or Path(self.output_dir).name


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-safe Python (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    result = plain(cfg)
    assert isinstance(result, dict)
    return result


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts, rejecting unknown keys by name."""
    cfg = _build(TrainConfig, data, prefix="")
    assert isinstance(cfg, TrainConfig)
    return cfg


def load_config(
    path: str | Path | None,
    overrides: list[str] | None = None,
    *,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Read ``path`` (YAML; ``None`` → ``base``, e.g. a checkpoint's config, or all defaults) and
    apply ``key.sub=value`` overrides.

    Override values are parsed with ``yaml.safe_load`` (``data.p=8``, ``solver.milestones=[2,3]``,
    ``amp=false``). Unknown keys — in the file or in an override — raise :class:`ConfigError`
    naming the key.
    """
    data: dict[str, Any] = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded
    for override in overrides or []:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {override!r} is not of the form key.sub=value")
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    return from_dict(data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + str(unknown[0])!r} (known in this section: "
            f"{', '.join(sorted(names))})"
        )
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        elem = typing.get_args(hint)[0]
        return tuple(_coerce(elem, v, key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{key} must be int, got {value!r}")
    return value
