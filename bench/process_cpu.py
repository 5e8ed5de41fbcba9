"""CPU time over a window, from Linux's ``/proc``: the bench client's own, the service process's
and the whole machine's, so a window's core time splits into client, service, everything else
running on the machine (other users' work included) and idle.

Linux only (the bench's platform): ``/proc/<pid>/stat`` and ``/proc/stat`` count in clock ticks
(``SC_CLK_TCK``, 10 ms by default), so windows of a few seconds or more are meant.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, so ``taskset`` and cpusets count."""
    return len(os.sched_getaffinity(0))


def _stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name (which may hold spaces and parentheses):
    index 0 is the state, 1 the parent pid, 11 utime, 12 stime (man 5 proc, fields 3–15)."""
    text = (_PROC / str(pid) / "stat").read_text()
    return text.rpartition(")")[2].split()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def child_pids(parent: int | None = None) -> list[int]:
    """Pids of the live direct children of ``parent`` (default: this process), sorted."""
    parent = os.getpid() if parent is None else parent
    out = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[1]) == parent:
                out.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # exited while listed
    return sorted(out)


def machine_cpu_s() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the machine so far, summed over its cores (the first
    line of ``/proc/stat``; idle and iowait count as not busy)."""
    first = (_PROC / "stat").read_text().splitlines()[0].split()
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    return (total - ticks[3] - ticks[4]) * _TICK_S, total * _TICK_S


@dataclass(frozen=True)
class CpuSnapshot:
    wall_s: float
    client_s: float
    service_s: float
    machine_busy_s: float
    machine_total_s: float


def cpu_snapshot(service_pid: int) -> CpuSnapshot:
    busy, total = machine_cpu_s()
    return CpuSnapshot(
        wall_s=time.monotonic(),
        client_s=time.process_time(),
        service_s=process_cpu_s(service_pid),
        machine_busy_s=busy,
        machine_total_s=total,
    )


@dataclass(frozen=True)
class CpuWindow:
    """CPU seconds between two snapshots. ``machine_s``: all cores' seconds (busy or not), so
    ``other_s`` (busy, neither client nor service) and ``idle_s`` complete the split."""

    wall_s: float
    client_s: float
    service_s: float
    busy_s: float
    machine_s: float

    @property
    def other_s(self) -> float:
        return self.busy_s - self.client_s - self.service_s

    @property
    def idle_s(self) -> float:
        return self.machine_s - self.busy_s

    @property
    def client_share(self) -> float:
        """Client CPU seconds per wall second (1.0 = one core)."""
        return self.client_s / self.wall_s if self.wall_s > 0 else 0.0


def cpu_window(before: CpuSnapshot, after: CpuSnapshot) -> CpuWindow:
    return CpuWindow(
        wall_s=after.wall_s - before.wall_s,
        client_s=after.client_s - before.client_s,
        service_s=after.service_s - before.service_s,
        busy_s=after.machine_busy_s - before.machine_busy_s,
        machine_s=after.machine_total_s - before.machine_total_s,
    )
