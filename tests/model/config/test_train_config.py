"""Config loading: YAML + dotted overrides, types, unknown keys named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model.config.train_config import ConfigError, TrainConfig, from_dict, load_config, to_dict

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


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    load_config(path, [])
