"""Options from the config that go to a constructor as keyword arguments, checked against its
signature first: a misspelt or inapplicable option is an error naming the options it does
take, not a raw ``TypeError`` from deep inside the build."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from model.config.train_config import ConfigError


def accepted_options(func: Callable[..., Any], skip: int = 0) -> list[str]:
    """Keyword-passable parameter names of ``func``, after its first ``skip`` (positional ones
    the builder supplies itself, e.g. ``num_classes``)."""
    params = list(inspect.signature(func).parameters.values())[skip:]
    return [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def check_options(
    func: Callable[..., Any],
    options: Mapping[str, Any],
    *,
    what: str,
    key: str,
    skip: int = 0,
    set_elsewhere: frozenset[str] = frozenset(),
    hint: str = "",
) -> None:
    """Raise :class:`ConfigError` when ``options`` holds a name ``func`` does not take.

    ``what`` names the thing built (``backbone 'efficientnet_lite0'``), ``key`` the config key
    the options came from (``model.backbone_kwargs``); ``set_elsewhere`` are parameters the
    builder fills from other config keys (not options here); ``hint`` ends the message."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [name for name in accepted_options(func, skip) if name not in set_elsewhere]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{what} takes no option {', '.join(repr(u) for u in unknown)} in {key}; "
            f"it takes: {', '.join(accepted) or 'none'}" + (f". {hint}" if hint else "")
        )
