"""The generator's collector: one collection on entry, off for the window, back on after."""

from __future__ import annotations

import gc
import weakref

import pytest

from bench.loadtest.collector_paused import collector_paused


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_collects_first_then_keeps_the_collector_off() -> None:
    assert gc.isenabled()
    before = Node()
    gone_before = weakref.ref(before)
    del before
    with collector_paused():
        assert gone_before() is None  # collected on entry
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block does not turn it back on
        during = Node()
        gone_during = weakref.ref(during)
        del during
        for _ in range(10):
            [Node() for _ in range(1000)]  # plenty of allocations: no collection runs
        assert gone_during() is not None
    assert gc.isenabled()
    gc.collect()
    assert gone_during() is None


def test_back_on_after_an_error() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
