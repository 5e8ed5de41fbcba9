"""Named constructors the training config chooses from: dataset readers, models, loss recipes.

Each registry is a plain dict from the name used in the YAML to a small function taking the
relevant config section; :func:`lookup` turns an unknown name into an error listing the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from torch import nn

from model.config.option_check import check_options
from model.config.train_config import DataConfig, LossConfig, ModelConfig
from model.data.coco_pairs import read_coco_pairs
from model.data.dataset_split import DatasetError, DatasetSplit
from model.data.folder_items import read_folder_items
from model.data.market1501 import read_market1501
from model.data.service_store import read_service_store
from model.losses.recipes.ctl_recipe import ctl_recipe
from model.losses.recipes.hpl_recipe import hpl_recipe
from model.losses.recipes.ranking_regularizer_recipe import ranking_regularizer_recipe
from model.losses.term_weights import with_term_weights
from model.losses.weighted_loss_sum import WeightedLossSum
from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.registry import build_backbone
from model.modeling.embedding_net import EmbeddingNet
from model.modeling.two_head_net import TwoHeadNet

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """``registry[name]``, or a ``ValueError`` naming the ``kind`` and the known names."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(
            f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(registry))}"
        ) from None


# --- datasets ------------------------------------------------------------------------------


def _market1501(cfg: DataConfig) -> DatasetSplit:
    return read_market1501(Path(cfg.root), name="market1501")


def _dukemtmc(cfg: DataConfig) -> DatasetSplit:
    # DukeMTMC-reID ships in the Market-1501 layout and naming scheme.
    return read_market1501(Path(cfg.root), name="dukemtmc")


def _coco_pairs(cfg: DataConfig) -> DatasetSplit:
    return read_coco_pairs(
        Path(cfg.root), cfg.train_json, cfg.query_json, cfg.gallery_json, image_dir=cfg.image_dir
    )


def _folder(cfg: DataConfig) -> DatasetSplit:
    return read_folder_items(
        Path(cfg.root), holdout_fraction=cfg.holdout_fraction, query_per_item=cfg.query_per_item
    )


def _service_store(cfg: DataConfig) -> DatasetSplit:
    if not cfg.store:
        raise DatasetError(
            "data.dataset=service_store needs data.store: the service's SQLite file "
            "(<data_dir>/store.sqlite3) or its Redis URL"
        )
    return read_service_store(
        cfg.store,
        cfg.blobs,
        namespace=cfg.store_namespace,
        holdout_fraction=cfg.holdout_fraction,
        query_per_item=cfg.query_per_item,
    )


DATASET_READERS: dict[str, Callable[[DataConfig], DatasetSplit]] = {
    "market1501": _market1501,
    "dukemtmc": _dukemtmc,
    "coco_pairs": _coco_pairs,
    "folder": _folder,
    "service_store": _service_store,
}


def read_dataset(cfg: DataConfig) -> DatasetSplit:
    return lookup(DATASET_READERS, cfg.dataset, "dataset")(cfg)


# --- models --------------------------------------------------------------------------------


def _backbone_kwargs(cfg: ModelConfig, load_pretrained: bool) -> dict[str, object]:
    kwargs = dict(cfg.backbone_kwargs)
    if not load_pretrained:
        # The weights come from a checkpoint right after: skip reading (or needing) the file.
        kwargs.pop("weights_path", None)
        if "pretrained" in kwargs or cfg.backbone == "efficientnet_lite0":
            kwargs["pretrained"] = False
    return kwargs


def _backbone(cfg: ModelConfig, load_pretrained: bool) -> Backbone:
    """The named backbone, frozen as the config says (before the network is built on it, so
    the two-head net's shape probe sees it in its final mode)."""
    backbone = build_backbone(cfg.backbone, **_backbone_kwargs(cfg, load_pretrained))
    if cfg.freeze_backbone:
        backbone.freeze()
    elif cfg.freeze_backbone_bn:
        backbone.freeze_batch_norm()
    return backbone


def _bnneck(
    cfg: ModelConfig, num_classes: int, input_size: tuple[int, int], load_pretrained: bool
) -> nn.Module:
    return EmbeddingNet(_backbone(cfg, load_pretrained), num_classes, embedding=cfg.embedding)


def _two_head(
    cfg: ModelConfig, num_classes: int, input_size: tuple[int, int], load_pretrained: bool
) -> nn.Module:
    return TwoHeadNet(
        _backbone(cfg, load_pretrained),
        num_classes,
        input_size_hw=input_size,
        embedding_dim=cfg.embedding_dim,
        head=cfg.head,
    )


MODELS: dict[str, Callable[[ModelConfig, int, tuple[int, int], bool], nn.Module]] = {
    "bnneck": _bnneck,
    "two_head": _two_head,
}
# Whether a model's ``embed`` output is already unit-norm (written into the export contract):
# the BN-neck output is not (centroids average raw embeddings), TwoHeadNet normalises.
OUTPUT_NORMALIZED: dict[str, bool] = {"bnneck": False, "two_head": True}


def build_model(
    cfg: ModelConfig, num_classes: int, input_size: tuple[int, int], *, load_pretrained: bool
) -> nn.Module:
    """The network: ``forward(x) -> NetOutput``, ``embed(x) -> (N, D)``, ``embedding_dim``."""
    return lookup(MODELS, cfg.name, "model")(cfg, num_classes, input_size, load_pretrained)


# --- loss recipes --------------------------------------------------------------------------


def _ctl(cfg: LossConfig, num_classes: int, feat_dim: int, seed: int) -> WeightedLossSum:
    return ctl_recipe(
        num_classes,
        feat_dim,
        margin=cfg.margin,
        label_smoothing=cfg.label_smoothing,
        center_weight=cfg.center_weight,
        center_lr=cfg.center_lr,
        **cfg.options,
    )


def _hpl(cfg: LossConfig, num_classes: int, feat_dim: int, seed: int) -> WeightedLossSum:
    return hpl_recipe(
        num_classes, feat_dim, proxy_lr_multiplier=cfg.proxy_lr_multiplier, seed=seed, **cfg.options
    )


def _ranking_regularizer(
    cfg: LossConfig, num_classes: int, feat_dim: int, seed: int
) -> WeightedLossSum:
    return ranking_regularizer_recipe(num_classes, **cfg.options)


LOSS_RECIPES: dict[str, Callable[[LossConfig, int, int, int], WeightedLossSum]] = {
    "ctl": _ctl,
    "hpl": _hpl,
    "ranking_regularizer": _ranking_regularizer,
}


# Each recipe's function, how many leading arguments the builder passes positionally, and the
# keyword parameters it fills from their own loss.* keys: what remains is what loss.options
# may hold.
RECIPE_OPTIONS: dict[str, tuple[Callable[..., WeightedLossSum], int, frozenset[str]]] = {
    "ctl": (ctl_recipe, 2, frozenset({"margin", "label_smoothing", "center_weight", "center_lr"})),
    "hpl": (hpl_recipe, 2, frozenset({"proxy_lr_multiplier", "seed"})),
    "ranking_regularizer": (ranking_regularizer_recipe, 1, frozenset()),
}


def build_loss(cfg: LossConfig, num_classes: int, feat_dim: int, seed: int) -> WeightedLossSum:
    """The recipe's loss with ``cfg.weights`` applied: a term at weight 0 is left out."""
    build = lookup(LOSS_RECIPES, cfg.recipe, "loss recipe")
    func, skip, set_elsewhere = RECIPE_OPTIONS[cfg.recipe]
    check_options(
        func,
        cfg.options,
        what=f"loss recipe {cfg.recipe!r}",
        key="loss.options",
        skip=skip,
        set_elsewhere=set_elsewhere,
        hint="A term's weight (0 switches it off) is loss.weights.<term>",
    )
    return with_term_weights(build(cfg, num_classes, feat_dim, seed), cfg.weights)
