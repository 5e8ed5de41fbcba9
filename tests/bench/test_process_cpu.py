"""CPU counters from /proc against what Python itself measures for the same work."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.process_cpu import child_pids, cpu_snapshot, cpu_window, machine_cpu_s, process_cpu_s

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_own_process_time_matches_process_time() -> None:
    cpu0, own0 = time.process_time(), process_cpu_s(os.getpid())
    _spin(0.3)
    cpu, own = time.process_time() - cpu0, process_cpu_s(os.getpid()) - own0
    # /proc counts in clock ticks: one tick of rounding at each end.
    assert own == pytest.approx(cpu, abs=2 * TICK_S + 0.01)


def test_child_is_found_and_its_cpu_counted_and_the_window_splits() -> None:
    spin = "import time\nend=time.process_time()+0.4\nwhile time.process_time()<end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin + "time.sleep(30)"])
    try:
        assert child.pid in child_pids()
        assert os.getpid() not in child_pids()
        before = cpu_snapshot(child.pid)
        deadline = time.monotonic() + 20
        while process_cpu_s(child.pid) < 0.4 - 2 * TICK_S:
            assert time.monotonic() < deadline, "the child never spun"
            time.sleep(0.05)
        after = cpu_snapshot(child.pid)
    finally:
        child.kill()
        child.wait()
    window = cpu_window(before, after)
    assert 0 < window.service_s <= 0.4 + 2 * TICK_S
    assert window.busy_s >= window.service_s - 2 * TICK_S
    # All cores' seconds: about wall time x cores (the counters tick at TICK_S).
    cores = os.cpu_count() or 1
    assert window.machine_s == pytest.approx(window.wall_s * cores, rel=0.2, abs=cores * 3 * TICK_S)
    parts = window.client_s + window.service_s + window.other_s + window.idle_s
    assert parts == pytest.approx(window.machine_s)
    assert window.client_share == window.client_s / window.wall_s


def test_machine_busy_never_exceeds_total() -> None:
    busy, total = machine_cpu_s()
    assert 0 <= busy <= total


def test_usable_cores_follow_the_process_affinity() -> None:
    # A child pinned to one core sees one, whatever the machine has; unpinned, its affinity.
    code = (
        "import os; from bench.process_cpu import usable_cores; before = usable_cores(); "
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); print(before, usable_cores())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(len(os.sched_getaffinity(0))), "1"]
