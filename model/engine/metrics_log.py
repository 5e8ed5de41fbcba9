"""Per-epoch metrics: a CSV file (one row per epoch, columns grow as new keys appear) and
TensorBoard scalars, written by rank 0 only."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path


class MetricsLog:
    """``log(epoch, {"loss/total": 1.2, "lr": 3.5e-4, "eval/centroid_map": 0.8})``.

    ``metrics.csv`` is rewritten whole at each call (a few hundred rows at most), so a run resumed
    from a checkpoint keeps the earlier rows and a new column appearing later (evaluation metrics
    every N epochs) gets a proper header.
    """

    def __init__(self, out_dir: Path, *, enabled: bool = True, tensorboard: bool = True) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        self.csv_path = out_dir / "metrics.csv"
        self._rows: list[dict[str, float]] = []
        self._writer = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.csv_path.is_file():
            with self.csv_path.open(newline="") as f:
                self._rows = [
                    {k: float(v) for k, v in row.items() if v not in ("", None)}
                    for row in csv.DictReader(f)
                ]
        if tensorboard:
            # Imported here: tensorboard is a training-only dependency and slow to import.
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def log(self, epoch: int, values: Mapping[str, float]) -> None:
        """Record ``values`` for ``epoch`` (1-based, the number of finished epochs)."""
        if not self.enabled:
            return
        # A resumed run re-logs nothing before its start; drop rows from a later, abandoned part.
        self._rows = [r for r in self._rows if int(r["epoch"]) < epoch] + [
            {"epoch": float(epoch), **{k: float(v) for k, v in values.items()}}
        ]
        self._rows.sort(key=lambda r: r["epoch"])
        columns = ["epoch", *sorted({k for r in self._rows for k in r} - {"epoch"})]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in self._rows:
                writer.writerow({k: (int(v) if k == "epoch" else v) for k, v in row.items()})
        tmp.replace(self.csv_path)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, float(value), epoch)
            self._writer.flush()

    def rows(self) -> list[dict[str, float]]:
        return [dict(r) for r in self._rows]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
