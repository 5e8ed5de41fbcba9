"""A model migration's record: what the original store keeps while a new model takes over.

The store the settings name (the *original*) holds the record under ``store_meta``'s
``migration`` key (``Store.get_meta``). It names the target model (identity, sha256 digest and
the path of its file in the models directory every replica reads), the state, and so which
store is active: ``switched`` serves the target's shadow store, every other state the
original. Both stores receive every write for as long as the record exists, so either can be
made active again without losing one (rollback). Switching and rolling back rewrite this one
record, in one transaction.

A model version's data is a whole store of its own, with the original's item and image ids:
the shadow's name is derived from the target (``shadow_tag``): SQLite a file beside the
original's, Redis the namespace ``<namespace>@<tag>``. Blobs are shared, never copied.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from typing import Literal

from store.records import ModelIdentity

MigrationState = Literal["re-embedding", "ready", "switched"]
STATES: tuple[MigrationState, ...] = ("re-embedding", "ready", "switched")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class MigrationRecord:
    source: ModelIdentity  # the model whose embeddings the original store holds
    target: ModelIdentity
    target_sha256: str  # of the target's ONNX file, hex
    target_path: str  # that file in the models directory (every replica reads it)
    state: MigrationState
    started_at: float  # Unix seconds

    @property
    def active(self) -> Literal["source", "target"]:
        """Which model serves: the target once switched, else the source."""
        return "target" if self.state == "switched" else "source"

    @property
    def writes(self) -> tuple[str, ...]:
        """Which versions receive writes: both, for as long as a migration is recorded."""
        return ("source", "target")

    @property
    def shadow_tag(self) -> str:
        """What names the target's store: its model version and the start of its digest
        (so two exports that both say version "2" do not share one)."""
        return f"v{_UNSAFE.sub('_', self.target.version)}-{self.target_sha256[:12]}"

    def with_state(self, state: MigrationState) -> MigrationRecord:
        return replace(self, state=state)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> MigrationRecord:
        data = json.loads(raw)
        state = str(data["state"])
        if state not in STATES:
            raise ValueError(f"unknown migration state {state!r}")
        return cls(
            source=ModelIdentity(**data["source"]),
            target=ModelIdentity(**data["target"]),
            target_sha256=str(data["target_sha256"]),
            target_path=str(data["target_path"]),
            state=state,
            started_at=float(data["started_at"]),
        )
