"""The training loop (:class:`Trainer`); :func:`~model.engine.trainer_builder.build_trainer`
assembles it from a config.

One optimiser step per P×K batch: the network with Adam, the loss's learnable state as the loss
declares (:class:`~model.losses.optimizer_needs.OptimizerNeeds`: proxies in Adam groups of their
own, center-loss centers with their own SGD after backward). The learning rate schedule steps
once per epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.data.pk_sampler import PKSampler
from model.engine.checkpoint import CheckpointManager, rng_state, set_rng_state
from model.engine.distributed import (
    DistInfo,
    all_reduce_mean,
    average_gradients,
    barrier,
    unwrap,
)
from model.engine.metrics_log import MetricsLog
from model.engine.seeding import epoch_seed, seed_everything
from model.evaluation.embed_split import SKIPPED_KEY
from model.losses.weighted_loss_sum import WeightedLossSum
from model.solver.warmup_multistep_lr import WarmupMultiStepLR

log = logging.getLogger(__name__)

# The default metric that decides best.pt (config key ``best_metric``): held-out centroid mAP
# (the CTL paper's headline number).
BEST_METRIC = "centroid/mAP"

Evaluator = Callable[[nn.Module], dict[str, float]]
# What the epoch line shows of each level's metrics (metrics.csv has them all), and the metric
# picking best.pt when it is another.
LEVELS = ("instance", "centroid")
SHOWN_METRICS = (("mAP", "mAP"), ("rank1", "R1"))


class BestMetricError(ValueError):
    """The held-out evaluation does not report the metric chosen to pick best.pt."""


def format_epoch(
    epoch: int, epochs: int, values: dict[str, float], best_metric_key: str = BEST_METRIC
) -> str:
    """One console line per epoch (everything else is in metrics.csv and TensorBoard); epoch 0
    is the untrained network (``solver.epochs = 0``)."""
    losses = ", ".join(
        f"{k[5:]} {v:.3f}" for k, v in values.items() if k.startswith("loss/") and k != "loss/total"
    )
    if "loss/total" in values:
        line = (
            f"epoch {epoch}/{epochs}  loss {values['loss/total']:.3f} ({losses})  "
            f"lr {values['lr']:.2e}  {values['time/epoch_s']:.1f} s"
        )
    else:
        line = f"epoch {epoch}/{epochs}  untrained network"
    if f"eval/{best_metric_key}" in values:
        shown = []
        for level in LEVELS:
            parts = [
                f"{label} {100 * values[f'eval/{level}/{key}']:.1f}%"
                for key, label in SHOWN_METRICS
                if f"eval/{level}/{key}" in values
            ]
            if parts:
                shown.append(f"{level} " + " ".join(parts))
        if best_metric_key not in {f"{lv}/{k}" for lv in LEVELS for k, _ in SHOWN_METRICS}:
            shown.append(f"{best_metric_key} {values[f'eval/{best_metric_key}']:.4f}")
        line += "  | held-out " + ", ".join(shown)
    skipped = int(values.get(f"eval/{SKIPPED_KEY}", 0))
    if skipped:
        line += f" ({skipped} unreadable images skipped)"
    return line


@dataclass(frozen=True)
class EpochSummary:
    epoch: int  # 1-based: number of finished epochs
    values: dict[str, float]


class Trainer:
    """Runs epochs, evaluates every ``eval_every``, checkpoints every ``checkpoint_every``.

    ``net`` may be wrapped in DDP. ``optimizer`` steps the network and the groups of the loss's
    ``param_groups``; the loss steps the rest of its state itself (``after_backward``).
    ``evaluator(net) -> metrics`` runs on rank 0 only; its metrics lack ``BEST_METRIC`` only
    when nothing could be scored, and then best.pt is left as it is.
    """

    def __init__(
        self,
        *,
        net: nn.Module,
        loss: WeightedLossSum,
        optimizer: torch.optim.Optimizer,
        scheduler: WarmupMultiStepLR,
        train_loader: DataLoader[Any],
        sampler: PKSampler,
        evaluator: Evaluator | None,
        metrics_log: MetricsLog,
        checkpoints: CheckpointManager,
        device: torch.device,
        amp: bool,
        dist: DistInfo,
        eval_every: int,
        checkpoint_every: int,
        seed: int,
        config_dict: dict[str, Any],
        label_map: dict[str, int],
        progress: bool = True,
        log_every: int = 0,
        best_metric_key: str = BEST_METRIC,
    ) -> None:
        self.net = net
        self.loss = loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.sampler = sampler
        self.evaluator = evaluator
        self.metrics_log = metrics_log
        self.checkpoints = checkpoints
        self.device = device
        # Mixed precision only on CUDA: CPU autocast (bfloat16) would slow the CPU path down.
        self.amp = amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.dist = dist
        self.eval_every = eval_every
        self.checkpoint_every = checkpoint_every
        self.seed = seed
        self.config_dict = config_dict
        self.label_map = label_map
        self.progress = progress and dist.is_main
        if log_every < 0:
            raise ValueError(f"log_every must be >= 0, got {log_every}")
        # Batch lines only where no bar shows progress, on rank 0.
        self.log_every = log_every if dist.is_main and not self.progress else 0
        self.start_epoch = 0
        self.best_metric_key = best_metric_key
        # The best value of ``best_metric_key`` so far; -inf until something has been scored.
        self.best_metric = float("-inf")
        # Loss state DDP does not see (centers, proxies): its gradients are averaged by hand.
        self._loss_params = [p for p in loss.parameters() if p.requires_grad]

    @property
    def model(self) -> nn.Module:
        """The plain network (no DDP wrapper)."""
        return unwrap(self.net)

    # --- state ---------------------------------------------------------------------------

    def state_dict(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loss_optimizers": self.loss.optimizer_state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "best_metric": self.best_metric,
            "best_metric_key": self.best_metric_key,
            "config": self.config_dict,
            "label_map": self.label_map,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss.load_optimizer_state_dict(state["loss_optimizers"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.best_metric = float(state["best_metric"])
        if state.get("best_metric_key", BEST_METRIC) != self.best_metric_key:
            # Resumed (existing_output=resume) with another best_metric: the stored best is a
            # value of the other metric, so the new one's best starts from here.
            self.best_metric = float("-inf")
        self.start_epoch = int(state["epoch"])

    def resume(self) -> bool:
        """Continue from ``last.pt`` when the output directory has one. True if resumed."""
        state = self.checkpoints.load_last(map_location=self.device)
        if state is None:
            return False
        if state["label_map"] != self.label_map:
            raise ValueError(
                f"{self.checkpoints.last_path} was trained on other items; use a new output_dir"
            )
        self.load_state_dict(state)
        if self.dist.is_main:
            log.info("resumed from %s at epoch %d", self.checkpoints.last_path, self.start_epoch)
        return True

    # --- loop ----------------------------------------------------------------------------

    def fit(self, epochs: int) -> list[EpochSummary]:
        """Train from ``start_epoch`` up to ``epochs`` finished epochs.

        ``epochs == 0`` on a fresh run scores the untrained network and writes it as epoch 0
        (``last.pt``, and ``best.pt`` when the evaluation scored it), the starting point."""
        if epochs == 0 and self.start_epoch == 0:
            return [self._untrained_epoch()]
        summaries = []
        for epoch in range(self.start_epoch, epochs):
            values = self.train_epoch(epoch)
            finished = epoch + 1
            last = finished == epochs
            is_best = False
            if self.evaluator is not None and (finished % self.eval_every == 0 or last):
                is_best = self._evaluate_into(values)
            if finished % self.checkpoint_every == 0 or last or is_best:
                self.checkpoints.save(self.state_dict(finished), epoch=finished, is_best=is_best)
            self.metrics_log.log(finished, values)
            summaries.append(EpochSummary(finished, values))
            if self.dist.is_main:
                print(format_epoch(finished, epochs, values, self.best_metric_key), flush=True)
            barrier(self.dist)
        self.start_epoch = max(self.start_epoch, epochs)
        return summaries

    def _untrained_epoch(self) -> EpochSummary:
        values: dict[str, float] = {"lr": float(self.optimizer.param_groups[0]["lr"])}
        is_best = self.evaluator is not None and self._evaluate_into(values)
        self.checkpoints.save(self.state_dict(0), epoch=0, is_best=is_best)
        self.metrics_log.log(0, values)
        if self.dist.is_main:
            print(format_epoch(0, 0, values, self.best_metric_key), flush=True)
        barrier(self.dist)
        return EpochSummary(0, values)

    def _evaluate_into(self, values: dict[str, float]) -> bool:
        """Evaluate, add the metrics to ``values`` as ``eval/<key>``; True when the chosen
        metric beat the best so far (a tie keeps the earlier epoch)."""
        metrics = self.evaluate()
        values.update({f"eval/{k}": v for k, v in metrics.items()})
        score = metrics.get(self.best_metric_key)
        scored = sorted(k for k in metrics if k != SKIPPED_KEY)
        if score is None and scored:
            raise BestMetricError(
                f"best_metric {self.best_metric_key!r} is not a metric the held-out evaluation "
                f"reports; it reports: {', '.join(scored)}"
            )
        if self.dist.is_main and score is not None and score > self.best_metric:
            self.best_metric = score
            return True
        return False

    def evaluate(self) -> dict[str, float]:
        """Held-out evaluation on rank 0 (the others wait): embeddings of the plain network."""
        metrics: dict[str, float] = {}
        if self.dist.is_main and self.evaluator is not None:
            metrics = self.evaluator(self.model)
        barrier(self.dist)
        return metrics

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the sampler's batches; returns mean losses, lr and wall time."""
        seed_everything(epoch_seed(self.seed, epoch, self.dist.rank))
        self.sampler.set_epoch(epoch)
        self.net.train()
        self.loss.train()
        sums: dict[str, float] = {}
        steps = 0
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch + 1}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        batches = len(self.train_loader)
        window_started, window_images = started, 0
        for images, labels, _ in bar:
            parts = self.step(images.to(self.device), labels.to(self.device))
            steps += 1
            window_images += int(images.shape[0])
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()}, refresh=False)
            if self.log_every and (steps % self.log_every == 0 or steps == batches):
                now = time.perf_counter()
                # This rank's images × the ranks: every rank runs batches of the same size.
                rate = window_images * self.dist.world_size / max(now - window_started, 1e-9)
                print(
                    f"epoch {epoch + 1} batch {steps}/{batches}  "
                    f"loss {sums['total'] / steps:.3f}  {rate:.1f} images/s",
                    flush=True,
                )
                window_started, window_images = now, 0
        bar.close()
        self.scheduler.step()
        values = {
            f"loss/{k}": all_reduce_mean(v / max(steps, 1), self.dist, self.device)
            for k, v in sums.items()
        }
        values["lr"] = float(lr)
        values["time/epoch_s"] = time.perf_counter() - started
        return values

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch ``images (N, 3, H, W) float [0, 1]``,
        ``labels (N,) int64``; returns the unweighted loss terms and their weighted total."""
        self.optimizer.zero_grad(set_to_none=True)
        # Also the loss state outside ``optimizer`` (centers), which the loss steps itself.
        self.loss.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            output = self.net(images)
            total, parts = self.loss(output, labels)
        self.scaler.scale(total).backward()
        average_gradients(self._loss_params, self.dist)
        self.scaler.step(self.optimizer)
        self.loss.after_backward(self.scaler)
        self.scaler.update()
        return {**parts, "total": float(total.detach())}
