"""Folder names → item ids: valid names kept, others mapped deterministically, clashes refused."""

from __future__ import annotations

import hashlib
import re

import pytest

from client.item_ids import ItemIdError, item_id_for, map_item_ids

# Written out independently of client/item_ids.py: the service's rule (app/dependencies.py).
ITEM_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _hash8(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def test_item_id_mapping_is_deterministic_valid_and_collision_checked() -> None:
    assert item_id_for("plain-name_1.2", "p:") == "p:plain-name_1.2"
    mapped = item_id_for("a b", "p:")
    assert mapped == f"p:a_b-{_hash8('a b')}" == item_id_for("a b", "p:")
    # Names that clean up alike stay apart by their hash.
    assert item_id_for("a?b", "p:") != mapped
    assert ITEM_ID.fullmatch(item_id_for("é" * 300, "x" * 96))
    with pytest.raises(ItemIdError, match="both map to item id"):
        map_item_ids(["a b", f"a_b-{_hash8('a b')}"], "")
    with pytest.raises(ItemIdError, match="--prefix"):
        map_item_ids(["a"], "bad prefix ")


def test_dot_segment_names_are_mapped_like_any_invalid_name() -> None:
    # "." and ".." are not item ids (URLs resolve them as path segments); "..." is one.
    assert item_id_for(".", "") == f".-{_hash8('.')}"
    assert item_id_for(".", ".") == f"..-{_hash8('.')}"
    assert item_id_for("...", "") == "..."
    for mapped in (item_id_for(".", ""), item_id_for(".", "."), item_id_for("..", "")):
        assert ITEM_ID.fullmatch(mapped) and mapped not in (".", "..")
