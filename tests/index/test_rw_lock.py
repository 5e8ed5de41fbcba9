"""ReadWriteLock: readers overlap, writers exclude everyone, a waiting writer goes first."""

from __future__ import annotations

import threading
import time

import pytest

from index.rw_lock import ReadWriteLock

WAIT_S = 5.0


def test_readers_hold_the_lock_together() -> None:
    lock = ReadWriteLock()
    inside = threading.Barrier(3, timeout=WAIT_S)  # breaks unless all 3 are inside at once

    def read() -> None:
        with lock.read():
            inside.wait()

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not inside.broken


def test_a_writer_excludes_readers_and_writers() -> None:
    lock = ReadWriteLock()
    entered: list[str] = []
    lock.acquire_write()
    threads = [
        threading.Thread(target=lambda: (lock.acquire_read(), entered.append("r"))),
        threading.Thread(target=lambda: (lock.acquire_write(), entered.append("w"))),
    ]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert entered == []
    lock.release_write()
    deadline = time.monotonic() + WAIT_S
    while not entered and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(entered) == 1  # the other one still waits for the first to release
    if entered == ["r"]:
        lock.release_read()
    else:
        lock.release_write()
    for t in threads:
        t.join(WAIT_S)
    assert sorted(entered) == ["r", "w"]


def test_a_waiting_writer_blocks_new_readers() -> None:
    lock = ReadWriteLock()
    order: list[str] = []
    lock.acquire_read()

    def write() -> None:
        with lock.write():
            order.append("writer")

    def late_read() -> None:
        with lock.read():
            order.append("late reader")

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.1)  # the writer is now waiting for the first reader
    reader = threading.Thread(target=late_read)
    reader.start()
    time.sleep(0.1)
    assert order == []
    lock.release_read()
    writer.join(WAIT_S)
    reader.join(WAIT_S)
    assert order == ["writer", "late reader"]


def test_release_without_acquire_is_an_error() -> None:
    lock = ReadWriteLock()
    with pytest.raises(RuntimeError):
        lock.release_read()
    with pytest.raises(RuntimeError):
        lock.release_write()
