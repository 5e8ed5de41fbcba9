"""StripedLock.hold_all excludes every key's holder, and does not deadlock against ``hold``."""

from __future__ import annotations

import threading
import time

from app.striped_lock import StripedLock


def test_hold_all_waits_for_any_key_holder_and_blocks_new_ones() -> None:
    locks = StripedLock(stripes=8)
    events: list[str] = []
    held = threading.Event()

    def writer() -> None:
        with locks.hold(["item-7"]):
            held.set()
            time.sleep(0.1)
            events.append("writer done")

    t = threading.Thread(target=writer)
    t.start()
    held.wait()
    with locks.hold_all():
        events.append("all held")
        got = threading.Event()

        def second() -> None:
            with locks.hold(["another key"]):
                got.set()

        s = threading.Thread(target=second)
        s.start()
        assert not got.wait(0.05)  # every stripe is held
    assert got.wait(2)
    t.join()
    s.join()
    assert events == ["writer done", "all held"]


def test_hold_all_against_many_holders_never_deadlocks() -> None:
    locks = StripedLock(stripes=16)
    stop = time.monotonic() + 0.5
    counter = [0]

    def churn(i: int) -> None:
        while time.monotonic() < stop:
            with locks.hold([f"k{i}", f"k{i + 1}", f"k{i * 7}"]):
                counter[0] += 1

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    alls = 0
    while time.monotonic() < stop:
        with locks.hold_all():
            alls += 1
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert alls > 0 and counter[0] > 0
