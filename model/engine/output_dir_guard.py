"""What a re-run does with an output directory that already holds a run: resume it only when
it is the same run, and say which keys differ when it is not.

Without this a changed config (another lr, another backbone option, a loss term switched off)
silently resumed the old run's ``last.pt`` and then trained with a mix of both.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.config.train_config import ConfigError, from_dict, to_dict
from model.engine.checkpoint import BEST, LAST, load_checkpoint

log = logging.getLogger(__name__)

CHECK = "check"
RESUME = "resume"
OVERWRITE = "overwrite"
EXISTING_OUTPUT_MODES = (CHECK, RESUME, OVERWRITE)

# Keys that say how long and how visibly a run goes on, not what it trains: they may change
# between the runs that make up one training (solver.epochs is how a run is extended).
RUN_CONTROL_KEYS = frozenset(
    {
        "solver.epochs",
        "progress",
        "log_every",
        "eval_every",
        "checkpoint_every",
        "keep_epoch_checkpoints",
        "device",
        "data.num_workers",
        "data.eval_batch_size",
        "existing_output",
        # The same directory, spelt another way (relative, absolute, moved).
        "output_dir",
    }
)


class OutputDirConflictError(ValueError):
    """``output_dir`` holds a run trained with another config; ``keys`` are the differing ones."""

    def __init__(self, out_dir: Path, keys: list[str], shown: str) -> None:
        self.out_dir = out_dir
        self.keys = keys
        super().__init__(
            f"{out_dir / LAST} was written by a run with another config ({shown}). "
            "Use another output_dir, or re-run with --resume (existing_output=resume: continue "
            "it with the new values) or --overwrite (existing_output=overwrite: delete it and "
            "start over)"
        )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        # An empty mapping (no backbone_kwargs, no loss.weights) adds no key, so a key set on
        # one side only is named itself: loss.weights.center, not loss.weights.
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _resolved(config: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config with today's defaults for keys added since it was written."""
    try:
        return to_dict(from_dict(dict(config)))
    except ConfigError:
        return dict(config)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """``{dotted key: (saved value, current value)}`` for every key that differs, run-control
    keys (:data:`RUN_CONTROL_KEYS`) aside; a key only one side has counts (value ``None``)."""
    old, new = _flatten(_resolved(saved)), _flatten(_resolved(current))
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if key not in RUN_CONTROL_KEYS and old.get(key) != new.get(key)
    }


def _shown(value: Any) -> str:
    return "unset" if value is None else repr(value)


def run_files(out_dir: Path) -> list[Path]:
    """What a run writes into its output directory (what ``overwrite`` deletes)."""
    names = [LAST, BEST, "metrics.csv", "tensorboard"]
    found = [out_dir / n for n in names if (out_dir / n).exists()]
    found += sorted(out_dir.glob("epoch_*.pt")) + sorted(out_dir.glob("*.tmp"))
    return found


def prepare_output_dir(
    out_dir: Path, config: Mapping[str, Any], mode: str, *, may_delete: bool
) -> None:
    """Decide what happens to a run already in ``out_dir`` before anything is written there.

    ``check``: nothing to do when there is no ``last.pt`` or its config matches ``config``
    apart from run-control keys; otherwise :class:`OutputDirConflictError` naming the keys.
    ``resume``: the trainer resumes whatever differs (logged). ``overwrite``: the run's files
    are deleted (by the process with ``may_delete``, rank 0 under DDP) so it starts over.
    """
    if mode not in EXISTING_OUTPUT_MODES:
        raise ConfigError(
            f"existing_output must be one of {', '.join(EXISTING_OUTPUT_MODES)}, got {mode!r}"
        )
    if mode == OVERWRITE:
        if may_delete:
            for path in run_files(out_dir):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        return
    last = out_dir / LAST
    if not last.is_file():
        return
    diffs = config_differences(load_checkpoint(last)["config"], config)
    if not diffs:
        return
    shown = "; ".join(
        f"{k}: {_shown(old)} there, {_shown(new)} now" for k, (old, new) in diffs.items()
    )
    if mode == CHECK:
        raise OutputDirConflictError(out_dir, list(diffs), shown)
    log.warning("resuming %s with a changed config: %s", last, shown)
