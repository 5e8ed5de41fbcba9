"""Term checks, and TermPostings against a plain dict of sets through random adds, discards and
moves (lone slots turning into sets and back)."""

from __future__ import annotations

import numpy as np
import pytest

from index.item_terms import TermPostings, check_terms, check_where


def test_check_terms_and_where() -> None:
    assert check_terms(frozenset({"a=1"})) == frozenset({"a=1"})
    assert check_terms(["a=1", "a=1", "b=2"]) == frozenset({"a=1", "b=2"})
    for bad in ("a=1", b"a=1", {"a": 1}, 3, frozenset({1})):
        with pytest.raises(TypeError):
            check_terms(bad)
    with pytest.raises(ValueError):
        check_terms(frozenset({""}))
    assert check_where(None) is None and check_where(frozenset()) is None
    assert check_where(frozenset({"a=1"})) == frozenset({"a=1"})


def test_postings_match_a_dict_of_sets_through_random_changes() -> None:
    rng = np.random.default_rng(0)
    vocabulary = [f"t={i}" for i in range(12)]
    postings = TermPostings()
    held: dict[int, frozenset[str]] = {}  # slot -> terms, the oracle's truth
    n_slots = 0

    def oracle(required: frozenset[str]) -> set[int]:
        return {slot for slot, terms in held.items() if required <= terms}

    for _ in range(3000):
        op = rng.random()
        if op < 0.45 or not held:
            terms = frozenset(rng.choice(vocabulary, size=int(rng.integers(0, 4))).tolist())
            slot = n_slots
            n_slots += 1
            postings.add(slot, terms)
            held[slot] = terms
        elif op < 0.75:
            slot = int(rng.choice(sorted(held)))
            postings.discard(slot, held.pop(slot))
        elif op < 0.9:
            # What the flat index does on a removal: the last slot moves into the gap.
            slot = int(rng.choice(sorted(held)))
            last = max(held)
            postings.discard(slot, held.pop(slot))
            if last != slot:
                postings.move(last, slot, held[last])
                held[slot] = held.pop(last)
        else:
            slot = int(rng.choice(sorted(held)))  # re-term in place, as an upsert does
            new = frozenset(rng.choice(vocabulary, size=int(rng.integers(0, 3))).tolist())
            postings.discard(slot, held[slot] - new)
            postings.add(slot, new - held[slot])
            held[slot] = new
        required = frozenset(rng.choice(vocabulary, size=int(rng.integers(1, 3))).tolist())
        assert postings.matching(required) == oracle(required)
    for term in vocabulary:
        assert postings.matching(frozenset({term})) == oracle(frozenset({term}))
    assert len(postings) == len({t for terms in held.values() for t in terms})
    for slot in list(held):
        postings.discard(slot, held.pop(slot))
    assert len(postings) == 0 and postings.matching(frozenset({"t=1"})) == set()


def test_memory_estimate_follows_content() -> None:
    postings = TermPostings()
    empty = postings.memory_bytes()
    postings.add(1, ["sku=1"])
    lone = postings.memory_bytes()
    postings.add(2, ["sku=1"])  # a second slot: a set is made
    shared = postings.memory_bytes()
    assert empty < lone < shared
    postings.discard(2, ["sku=1"])
    assert postings.memory_bytes() == lone
    postings.discard(1, ["sku=1"])
    assert postings.memory_bytes() < lone  # the dict keeps its grown table, as CPython's do
