"""The load generator's own garbage collector, kept out of a timed window.

CPython's cyclic collector stops the whole generator while it runs: a full collection over the
generator's heap (a gallery of views, the samples of earlier windows) took 90-135 ms in
``bench.migration_under_load``, several times a minute. The requests due meanwhile leave late
and together: their latency, measured from the schedule, is charged to the service, and their
burst meets the service's admission queue. So a timed window runs with the collector off;
reference counting still frees everything that is not a cycle, and the cycles made during the
window are collected after it. No collection is forced on entry: in a large process (the test
suite's) one takes seconds, and nothing in the window needs it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (nested use keeps it off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
