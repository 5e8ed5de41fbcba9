"""Load pretrained weights from a user-supplied ``.pth`` file into a backbone, loudly.

Nothing is downloaded: pretrained weights only come from a local file. The file may hold a
plain state dict, or one under a ``"state_dict"`` key, with or without DDP's ``module.``
prefix. Classifier keys (given prefixes, e.g. ``fc.``) are ignored; any other missing or
unexpected key, or any shape mismatch, is an error that lists the offenders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Counters BatchNorm added in PyTorch 0.4.1; older checkpoints (IBN-Net's) do not have them, and
# they do not change the forward pass in either mode as used here (momentum is set).
_OPTIONAL_SUFFIX = "num_batches_tracked"
# What DistributedDataParallel puts before every key of the wrapped model's state dict.
_DDP_PREFIX = "module."


class WeightsFileError(ValueError):
    """A weights file is missing or does not fit the backbone."""


def load_state_dict_file(
    module: nn.Module, path: str | Path, ignore_prefixes: Sequence[str] = ("fc.",)
) -> None:
    """Copy the tensors of ``path`` into ``module`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file {path} does not exist")
    loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise WeightsFileError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    state = {
        (k[len(_DDP_PREFIX) :] if k.startswith(_DDP_PREFIX) else k): v for k, v in loaded.items()
    }
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys, e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches, e.g. {mismatched[:5]}")
    if problems:
        raise WeightsFileError(
            f"{path} does not fit {type(module).__name__}: " + "; ".join(problems)
        )
    module.load_state_dict(state, strict=False)
