"""Item terms: the opaque strings a filtered search matches exactly, and the map from each term
to the index slots that hold it.

The store renders an item's attributes into terms (``"key=value"``, e.g. ``"cat=shoe"``) and a
filter into the terms it requires; the index never parses them. An item matches a filter when
its term set contains every required term (an AND of exact matches); an empty filter (or None)
is no filter.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

NO_TERMS: frozenset[str] = frozenset()

# ``memory_bytes`` estimate of one (term, slot) posting: a set entry (16 B at CPython's load
# factor of at most 3/5, ~27 B) plus the int object of the slot (28 B; slots above 256 are not
# cached small ints); and of one distinct term, its empty set (growth is in the postings), its
# dict entry and its string (a compact ASCII str: 49 bytes plus one per character).
_POSTING_BYTES = 56
_TERM_BYTES = sys.getsizeof(set()) + 24 + 49


def check_terms(terms: object) -> frozenset[str]:
    """``terms`` as a frozenset of non-empty strings; TypeError for a bare string (a classic
    slip: ``"cat=shoe"`` would become its characters) or anything not a collection of str,
    ValueError for an empty term."""
    if type(terms) is frozenset:
        out: frozenset[str] = terms  # the common case: no copy
    elif isinstance(terms, str | bytes) or not isinstance(terms, frozenset | set | list | tuple):
        raise TypeError(f"terms must be a frozenset of str, got {type(terms).__name__}")
    else:
        out = frozenset(terms)
    for term in out:
        if type(term) is not str:
            raise TypeError(f"a term must be a str, got {type(term).__name__}")
        if not term:
            raise ValueError("a term must not be empty")
    return out


def check_where(where: object) -> frozenset[str] | None:
    """A search filter: None when there is none (None or empty), else its required terms."""
    if where is None:
        return None
    required = check_terms(where)
    return required or None


class TermPostings:
    """Term -> set of slots holding it (an inverted map), updated in O(terms of the item).

    Not locked: the owning index holds its own lock around every call, and the sets
    ``matching`` returns must not outlive that hold.
    """

    def __init__(self) -> None:
        self._slots: dict[str, set[int]] = {}
        self._postings = 0
        self._term_bytes = 0

    def __len__(self) -> int:
        """The number of distinct terms held."""
        return len(self._slots)

    def add(self, slot: int, terms: Iterable[str]) -> None:
        by_term = self._slots
        for term in terms:
            holders = by_term.get(term)
            if holders is None:
                by_term[term] = {slot}
                self._term_bytes += _TERM_BYTES + len(term)
                self._postings += 1
            elif slot not in holders:
                holders.add(slot)
                self._postings += 1

    def discard(self, slot: int, terms: Iterable[str]) -> None:
        for term in terms:
            holders = self._slots.get(term)
            if holders is None or slot not in holders:
                continue
            holders.remove(slot)
            self._postings -= 1
            if not holders:
                del self._slots[term]
                self._term_bytes -= _TERM_BYTES + len(term)

    def move(self, old: int, new: int, terms: Iterable[str]) -> None:
        """The item holding ``terms`` moved from slot ``old`` to slot ``new``."""
        for term in terms:
            holders = self._slots[term]
            holders.discard(old)
            holders.add(new)

    def matching(self, required: frozenset[str]) -> set[int]:
        """The slots holding every term of ``required`` (non-empty). One term: its own set,
        not a copy (read it only while the index's lock is held); several: their
        intersection, computed from the smallest set up (cost: that set's size)."""
        sets = []
        for term in required:
            holders = self._slots.get(term)
            if holders is None:
                return set()
            sets.append(holders)
        if len(sets) == 1:
            return sets[0]
        sets.sort(key=len)
        return sets[0].intersection(*sets[1:])

    def memory_bytes(self) -> int:
        """Approximate: the per-term sets and strings, and ``_POSTING_BYTES`` per posting."""
        return sys.getsizeof(self._slots) + self._term_bytes + self._postings * _POSTING_BYTES
