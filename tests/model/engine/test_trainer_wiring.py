"""How the trainer wires its optimisers, best checkpoint and logs, checked on real Trainer steps
and a real (tiny) run.

* Center-loss centers: not in Adam; their own SGD (lr 0.5) steps on the gradient × 1/weight, i.e.
  on the unweighted center-loss gradient (reference ``train_ctl_model.py``), computed by hand.
* HPL: proxies in their own Adam group at ``proxy_lr_multiplier`` × the base lr.
* best.pt is the epoch with the highest held-out centroid mAP in metrics.csv.
* TensorBoard events hold the same scalars as metrics.csv.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from model.config.train_config import load_config
from model.data.folder_items import read_folder_items
from model.engine.checkpoint import load_checkpoint, load_model_from_checkpoint
from model.engine.trainer import BEST_METRIC, Trainer
from model.engine.trainer_builder import build_trainer
from model.evaluation.embed_split import evaluate_split, torch_embedder
from model.losses.center_loss import CenterLoss
from model.losses.center_sgd import CenterSGD
from model.losses.hierarchical_proxy_loss import HierarchicalProxyLoss
from model.modeling.net_output import NetOutput

from .test_train_end_to_end import tiny_config

BASE_LR = 0.003  # tiny_config's solver.base_lr


def first_batch(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    trainer.sampler.set_epoch(0)
    images, labels, _ = next(iter(trainer.train_loader))
    return images, labels


def adam_param_ids(trainer: Trainer) -> list[int]:
    return [id(p) for g in trainer.optimizer.param_groups for p in g["params"]]


# --- center loss ---------------------------------------------------------------------------


def test_centers_have_their_own_sgd_on_the_unweighted_gradient(
    photo_folder: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, [*tiny_config(photo_folder, tmp_path, 1), "data.p=4"])
    trainer = build_trainer(cfg)
    (center_term,) = [t for t in trainer.loss.terms if isinstance(t.loss, CenterLoss)]
    centers = center_term.loss.centers
    weight = cfg.loss.center_weight
    assert (weight, cfg.loss.center_lr) == (5e-4, 0.5)

    # Not in Adam; alone in a plain SGD (no momentum, no weight decay) at lr 0.5.
    in_adam = adam_param_ids(trainer)
    assert id(centers) not in in_adam
    # (The BN-neck bias is frozen, so not every network parameter is trainable.)
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    assert sorted(in_adam) == sorted(id(p) for p in trainable)
    assert isinstance(center_term.needs, CenterSGD)
    center_opt = center_term.needs.optimizer
    assert isinstance(center_opt, torch.optim.SGD)
    (group,) = center_opt.param_groups
    assert [id(p) for p in group["params"]] == [id(centers)]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.5, 0, 0)

    images, labels = first_batch(trainer)
    # The features the step will see: a copy of the network, same mode, same batch.
    reference = copy.deepcopy(trainer.model).train()
    with torch.no_grad():
        out = reference(images)
    assert isinstance(out, NetOutput)
    x = out.features.double()
    before = centers.detach().double().clone()
    # Unweighted center loss L = Σ_i ||x_i - c_{y_i}||² / N, so dL/dc_k = 2/N Σ_{y_i=k} (c_k - x_i).
    grad = torch.zeros_like(before)
    grad.index_add_(0, labels, 2.0 * (before[labels] - x) / len(labels))
    expected = before - 0.5 * grad

    trainer.step(images, labels)

    after = centers.detach().double()
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-5)
    in_batch = torch.zeros(len(before), dtype=torch.bool)
    in_batch[labels] = True
    assert torch.equal(after[~in_batch], before[~in_batch])
    # The centers moved far more than the tolerance, and a step on the weighted gradient (no
    # 1/weight) would move them `weight` times as far: the check tells the two apart.
    moved = (expected - before)[in_batch].abs().max().item()
    assert moved * (1 - weight) > 1000 * 1e-5, moved


# --- proxies -------------------------------------------------------------------------------


def test_hpl_proxies_learn_at_100x_the_base_lr(photo_folder: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None, [*tiny_config(photo_folder, tmp_path, 1), "data.p=4", "loss.recipe=hpl"]
    )
    assert cfg.loss.proxy_lr_multiplier == 100.0
    trainer = build_trainer(cfg)
    # No loss state stepped outside Adam: no optimiser of the loss's own.
    assert trainer.loss.optimizer_state_dict() == {"hpl": {}}
    (hpl,) = [m for m in trainer.loss.modules() if isinstance(m, HierarchicalProxyLoss)]
    proxies = hpl.base.proxies
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2
    net_group, proxy_group = groups
    assert [id(p) for p in proxy_group["params"]] == [id(proxies)]
    net_params = [p for p in trainer.model.parameters() if p.requires_grad]
    assert [id(p) for p in net_group["params"]] == [id(p) for p in net_params]
    # Every trainable tensor is in exactly one group.
    everything = net_params + [p for p in trainer.loss.parameters() if p.requires_grad]
    assert sorted(adam_param_ids(trainer)) == sorted(id(p) for p in everything)
    # Base lrs before the schedule; the warm-up scales both groups alike.
    assert net_group["initial_lr"] == pytest.approx(BASE_LR)
    assert proxy_group["initial_lr"] == pytest.approx(100 * BASE_LR)
    net_lr, proxy_lr = net_group["lr"], proxy_group["lr"]
    assert net_lr == pytest.approx(cfg.solver.warmup_factor * BASE_LR)
    assert proxy_lr == pytest.approx(100 * net_lr)

    # Adam's first step moves each element by lr · g / (|g| + eps): the largest move of a
    # tensor is its group's lr.
    images, labels = first_batch(trainer)
    before_proxies = proxies.detach().clone()
    conv = next(p for p in trainer.model.parameters() if p.dim() == 4)
    before_conv = conv.detach().clone()
    trainer.step(images, labels)
    proxy_move = (proxies.detach() - before_proxies).abs().max().item()
    conv_move = (conv.detach() - before_conv).abs().max().item()
    assert proxy_move == pytest.approx(proxy_lr, rel=1e-3)
    assert conv_move == pytest.approx(net_lr, rel=1e-3)


# --- best.pt and the logs ------------------------------------------------------------------

EPOCHS = 4
LOGGED_LOSSES = ("loss/total", "loss/cross_entropy", "loss/triplet", "loss/center",
                 "loss/centroid_triplet")  # fmt: skip


@pytest.fixture(scope="module")
def run(photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run evaluated every epoch; a high lr with no decay so the mAP does not simply
    climb (not relied on: the scripted test below covers a best epoch before the last)."""
    out = tmp_path_factory.mktemp("run")
    overrides = [
        *tiny_config(photo_folder, out, EPOCHS),
        "eval_every=1",
        "solver.milestones=[100]",
        "solver.warmup_epochs=0",
        "solver.base_lr=0.01",
    ]
    build_trainer(load_config(None, overrides)).fit(EPOCHS)
    return out


def read_csv(out: Path) -> list[dict[str, float]]:
    with (out / "metrics.csv").open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]


def test_best_checkpoint_is_the_argmax_of_the_logged_map(run: Path, photo_folder: Path) -> None:
    rows = read_csv(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    maps = [r[f"eval/{BEST_METRIC}"] for r in rows]
    best_epoch = 1 + maps.index(max(maps))  # the first of equal maxima: ">" keeps the earlier
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == best_epoch, maps
    assert best["best_metric"] == max(maps)
    assert load_checkpoint(run / "last.pt")["epoch"] == EPOCHS
    # The stored weights are that epoch's: evaluated again, they give the logged mAP.
    net, cfg = load_model_from_checkpoint(run / "best.pt")
    again = evaluate_split(
        torch_embedder(net, cfg.data.input_size, batch_size=cfg.data.eval_batch_size),
        read_folder_items(photo_folder),
    )
    assert again[BEST_METRIC] == pytest.approx(max(maps), abs=1e-6)


def test_best_checkpoint_follows_a_peak_before_the_last_epoch(
    photo_folder: Path, tmp_path: Path
) -> None:
    # Real training, scripted scores: the peak is at epoch 2, so best.pt must not be last.pt.
    scores = iter([0.2, 0.5, 0.4, 0.5])
    overrides = [
        *tiny_config(photo_folder, tmp_path, EPOCHS),
        "data.p=4",
        "eval_every=1",
        "checkpoint_every=1",
        "keep_epoch_checkpoints=true",
    ]
    trainer = build_trainer(load_config(None, overrides))
    trainer.evaluator = lambda net: {BEST_METRIC: (s := next(scores)), "centroid/rank1": s}
    trainer.fit(EPOCHS)
    best = load_checkpoint(tmp_path / "best.pt")
    assert (best["epoch"], best["best_metric"]) == (2, 0.5)  # a later tie does not replace it
    at_2 = load_checkpoint(tmp_path / "epoch_002.pt")["model"]
    at_4 = load_checkpoint(tmp_path / "epoch_004.pt")["model"]
    assert all(torch.equal(best["model"][k], v) for k, v in at_2.items())
    assert not all(torch.equal(best["model"][k], v) for k, v in at_4.items())


def test_tensorboard_events_hold_the_logged_scalars(run: Path) -> None:
    event_files = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(event_files) == 1
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {*LOGGED_LOSSES, "lr", f"eval/{BEST_METRIC}"} <= tags, sorted(tags)
    rows = read_csv(run)
    for tag in tags:
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [int(r["epoch"]) for r in rows], tag
        # TensorBoard stores float32.
        assert [s.value for s in scalars] == pytest.approx([r[tag] for r in rows], rel=1e-6)
    total = [s.value for s in events.Scalars("loss/total")]
    assert total[-1] < total[0]
