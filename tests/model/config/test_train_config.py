"""Config loading: YAML + dotted overrides, types, unknown keys named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model.config.train_config import ConfigError, TrainConfig, from_dict, load_config, to_dict
from model.engine.registries import DATASET_READERS, build_loss, build_model, lookup

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_are_the_reference_recipe() -> None:
    cfg = load_config(None, [])
    assert cfg.solver.epochs == 120
    assert cfg.solver.base_lr == 3.5e-4
    assert cfg.solver.weight_decay == 5e-4
    assert (cfg.solver.warmup_epochs, cfg.solver.warmup_factor) == (10, 0.1)
    assert cfg.solver.milestones == (40, 70) and cfg.solver.gamma == 0.1
    assert (cfg.loss.center_lr, cfg.loss.center_weight) == (0.5, 5e-4)
    assert (cfg.loss.margin, cfg.loss.label_smoothing) == (0.5, 0.1)
    assert (cfg.data.p, cfg.data.k, cfg.data.input_size) == (16, 4, (256, 128))


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"solver": {"base_lr": 1e-4, "epochs": 7}, "seed": 3}))
    cfg = load_config(
        path,
        [
            "solver.epochs=2",
            "data.input_size=[64, 32]",
            "solver.milestones=[1]",
            "amp=false",
            "solver.warmup_factor=1",
            "model.backbone_kwargs.out_channels=16",
            "loss.options={base: proxy_nca}",
        ],
    )
    assert cfg.solver.base_lr == 1e-4  # from the file
    assert cfg.solver.epochs == 2  # override wins
    assert cfg.seed == 3
    assert cfg.data.input_size == (64, 32)
    assert cfg.solver.milestones == (1,)
    assert cfg.amp is False
    assert isinstance(cfg.solver.warmup_factor, float) and cfg.solver.warmup_factor == 1.0
    # A dict-valued field's sub-key override replaces the whole default mapping.
    assert cfg.model.backbone_kwargs == {"out_channels": 16}
    assert cfg.loss.options == {"base": "proxy_nca"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["solver.lr=0.1"], "solver.lr"),
        (["sovler.epochs=3"], "sovler"),
        (["data.pk=3"], "data.pk"),
    ],
)
def test_unknown_keys_are_named(overrides: list[str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(None, overrides)


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: tiny_cnn\n  depth: 3\n")
    with pytest.raises(ConfigError, match=r"model\.depth"):
        load_config(path, [])


def test_bad_values_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"solver\.epochs"):
        load_config(None, ["solver.epochs=many"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(None, ["solver.epochs"])
    with pytest.raises(ConfigError, match=r"data\.input_size"):
        load_config(None, ["data.input_size=256"])


def test_round_trip_through_dict() -> None:
    overrides = ["data.input_size=[64, 64]", "loss.recipe=hpl", "solver.milestones=[3]"]
    cfg = load_config(None, overrides)
    again = from_dict(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert again == cfg
    assert isinstance(again, TrainConfig)


# Every file in configs/, not a glob of one suffix: a config saved as .yml, or any other file,
# fails here instead of going untested.
SHIPPED_CONFIGS = sorted(p for p in (ROOT / "configs").iterdir() if p.is_file())


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_build(path: Path) -> None:
    assert path.suffix == ".yaml", f"{path.name}: configs are .yaml files"
    cfg = load_config(path, [])
    # Names the registries know, and a network and loss that build from the config's own
    # kwargs and options (without weights files or data, which are not here).
    lookup(DATASET_READERS, cfg.data.dataset, "dataset")
    net = build_model(cfg.model, 4, cfg.data.input_size, load_pretrained=False)
    build_loss(cfg.loss, 4, int(net.embedding_dim), cfg.seed)
    assert cfg.data.p >= 2 and cfg.data.k >= 2


# The reference's training scripts (mikwieczorek/centroids-reid, train_scripts/*/*.sh:
# SOLVER.IMS_PER_BATCH items × DATALOADER.NUM_INSTANCE 4), input size, backbone, base lr, fp16.
REFERENCE_RUNS = {
    "market1501_r50.yaml": ("market1501", (256, 128), "resnet50", 16, 3.5e-4, False),
    "dukemtmc_r50.yaml": ("dukemtmc", (256, 128), "resnet50", 16, 3.5e-4, False),
    "deepfashion_r50.yaml": ("coco_pairs", (256, 128), "resnet50", 48, 1e-4, True),
    "deepfashion_r50ibn.yaml": ("coco_pairs", (320, 320), "resnet50_ibn_a", 12, 1e-4, True),
    "street2shop_r50.yaml": ("coco_pairs", (256, 128), "resnet50", 48, 1e-4, True),
    "street2shop_r50ibn.yaml": ("coco_pairs", (320, 320), "resnet50_ibn_a", 14, 1e-4, True),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_RUNS))
def test_example_configs_mirror_the_reference_scripts(name: str) -> None:
    dataset, input_size, backbone, p, base_lr, amp = REFERENCE_RUNS[name]
    cfg = load_config(ROOT / "configs" / name, [])
    assert (cfg.data.dataset, cfg.data.input_size, cfg.model.backbone) == (
        dataset,
        input_size,
        backbone,
    )
    assert (cfg.data.p, cfg.data.k) == (p, 4)
    assert (cfg.solver.base_lr, cfg.amp) == (base_lr, amp)
    assert cfg.model.backbone_kwargs["last_stride"] == 1
    assert (cfg.loss.recipe, cfg.solver.epochs, cfg.solver.milestones) == ("ctl", 120, (40, 70))
