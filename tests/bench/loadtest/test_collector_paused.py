"""The generator's collector: off for the window, back on after."""

from __future__ import annotations

import gc
import weakref

import pytest

from bench.loadtest.collector_paused import collector_paused


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_the_collector_is_off_in_the_block() -> None:
    assert gc.isenabled()
    with collector_paused():
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
