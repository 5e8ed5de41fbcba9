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

# ``memory_bytes`` estimates: a posting is a set entry (16 B at CPython's load factor of at
# most 3/5, ~27 B) plus the int object of the slot (28 B; slots above 256 are not cached small
# ints); a distinct term is its dict entry and its string (a compact ASCII str: 49 bytes plus
# one per character), and, once two or more slots hold it, its set.
_POSTING_BYTES = 56
_TERM_BYTES = 24 + 49
_SET_BYTES = sys.getsizeof(set())


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
    """Term -> the slots holding it (an inverted map), updated in O(terms of the item).

    A term one slot holds (a SKU, a serial number: often most terms) maps to that slot, an
    int; a set is made only when a second slot holds it (a set costs ~216 B, a third of a
    million unique terms would cost 70 MB more as sets).

    Not locked: the owning index holds its own lock around every call, and the sets
    ``matching`` returns must not outlive that hold.
    """

    def __init__(self) -> None:
        self._slots: dict[str, int | set[int]] = {}
        self._postings = 0
        self._sets = 0
        self._term_bytes = 0

    def __len__(self) -> int:
        """The number of distinct terms held."""
        return len(self._slots)

    def add(self, slot: int, terms: Iterable[str]) -> None:
        by_term = self._slots
        for term in terms:
            holders = by_term.get(term)
            if holders is None:
                by_term[term] = slot
                self._term_bytes += _TERM_BYTES + len(term)
                self._postings += 1
            elif isinstance(holders, int):
                if holders != slot:
                    by_term[term] = {holders, slot}
                    self._sets += 1
                    self._postings += 1
            elif slot not in holders:
                holders.add(slot)
                self._postings += 1

    def discard(self, slot: int, terms: Iterable[str]) -> None:
        by_term = self._slots
        for term in terms:
            holders = by_term.get(term)
            if holders is None:
                continue
            if isinstance(holders, int):
                if holders == slot:
                    del by_term[term]
                    self._term_bytes -= _TERM_BYTES + len(term)
                    self._postings -= 1
                continue
            if slot not in holders:
                continue
            holders.remove(slot)
            self._postings -= 1
            if len(holders) == 1:  # back to a lone slot
                by_term[term] = next(iter(holders))
                self._sets -= 1

    def move(self, old: int, new: int, terms: Iterable[str]) -> None:
        """The item holding ``terms`` moved from slot ``old`` to slot ``new``."""
        by_term = self._slots
        for term in terms:
            holders = by_term[term]
            if isinstance(holders, int):
                by_term[term] = new
            else:
                holders.discard(old)
                holders.add(new)

    def matching(self, required: frozenset[str]) -> set[int]:
        """The slots holding every term of ``required`` (non-empty). One term held by several
        slots: its own set, not a copy (read it only while the index's lock is held); several
        terms: their intersection, from the smallest set up (cost: that set's size)."""
        sets: list[set[int]] = []
        lone: int | None = None
        for term in required:
            holders = self._slots.get(term)
            if holders is None:
                return set()
            if isinstance(holders, int):
                if lone is not None and lone != holders:
                    return set()
                lone = holders
            else:
                sets.append(holders)
        if lone is not None:
            return {lone} if all(lone in s for s in sets) else set()
        if len(sets) == 1:
            return sets[0]
        sets.sort(key=len)
        return sets[0].intersection(*sets[1:])

    def memory_bytes(self) -> int:
        """Approximate: the map, each term's string and set, ``_POSTING_BYTES`` per posting."""
        return (
            sys.getsizeof(self._slots)
            + self._term_bytes
            + self._sets * _SET_BYTES
            + self._postings * _POSTING_BYTES
        )
