"""Item ids for folder names: ``prefix + name`` when valid, else a deterministic valid id."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

# The service's item id rule (app/dependencies.py ITEM_ID_PATTERN): [A-Za-z0-9._:-]{1,128}
# but "." and "..", which URLs resolve as path segments instead of sending them as an id.
ITEM_ID_RE = re.compile(
    r"[A-Za-z0-9_:-]|[A-Za-z0-9_:-][A-Za-z0-9._:-]|\.[A-Za-z0-9_:-]|[A-Za-z0-9._:-]{3,128}"
)
MAX_ITEM_ID = 128
INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9._:-]")
# 8 hex digits: collisions among one dataset's renamed folders are checked, not assumed away.
NAME_HASH_DIGITS = 8
# Leave room for a readable stem after the prefix in every mapped id.
MAX_PREFIX = 96


class ItemIdError(ValueError):
    """A prefix that cannot start an item id, or two folders that map to the same id."""


def item_id_for(folder: str, prefix: str) -> str:
    """The item id a folder is enrolled under: ``prefix + folder`` when valid, else mapped.

    Invalid characters become ``_`` and a short hash of the original name is appended. The
    mapping depends only on the folder name, so the same folder maps to the same id, run after
    run (and a gallery and a query folder of one item to one id). ``.`` and ``..`` (as a
    prefix alone, or ``.`` + ``.``) are mapped too, to ``.-<hash>`` and ``..-<hash>``.
    """
    candidate = prefix + folder
    if ITEM_ID_RE.fullmatch(candidate):
        return candidate
    # surrogateescape: names that are not valid UTF-8 on disk still hash to a stable value.
    digest = hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()
    stem = INVALID_ID_CHARS.sub("_", folder)[: MAX_ITEM_ID - len(prefix) - 1 - NAME_HASH_DIGITS]
    return f"{prefix}{stem}-{digest[:NAME_HASH_DIGITS]}"


def map_item_ids(folders: Sequence[str], prefix: str) -> dict[str, str]:
    """Folder name → item id for every folder; :class:`ItemIdError` on a bad prefix or clash."""
    if len(prefix) > MAX_PREFIX or INVALID_ID_CHARS.search(prefix):
        raise ItemIdError(
            f"--prefix {prefix!r} must be at most {MAX_PREFIX} characters of [A-Za-z0-9._:-]"
        )
    ids = {name: item_id_for(name, prefix) for name in folders}
    owners: dict[str, str] = {}
    for name, item_id in ids.items():
        if item_id in owners:
            raise ItemIdError(
                f"folders {owners[item_id]!r} and {name!r} both map to item id {item_id!r}; "
                "rename one of them"
            )
        owners[item_id] = name
    return ids
