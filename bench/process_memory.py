"""Resident memory of a process from Linux's ``/proc``: now, and the peak since a reset.

``VmHWM`` is the kernel's own high-water mark of the resident set, so a short spike between two
samples is not missed; writing ``5`` to ``/proc/<pid>/clear_refs`` (Linux >= 4.0, same user)
resets it to the current size, so a peak can be measured over one window only.
"""

from __future__ import annotations

from pathlib import Path

_PROC = Path("/proc")
MiB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int:
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """The resident set of ``pid`` now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The largest resident set of ``pid`` since it started or since :func:`reset_peak_rss`."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset the high-water mark to the current resident set; False where the kernel refuses."""
    try:
        (_PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True
