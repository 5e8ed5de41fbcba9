"""One log line per kind of event per interval, however many events: a flood stays readable.

Thousands of slow or refused connections a second would otherwise write a line each (the issue
measured 15 MB of log a minute), burying everything else and costing the event loop more than
the connections do. The first event of a kind in a quiet spell is logged at once, as it comes;
the ones that follow within ``interval_s`` are counted, and the count is logged in one line
when the interval is over ("closed 1234 connections (header timeout) in the last 10 s").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 10.0


class EventLogSummary:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> (start of its current interval, events counted since, what one is called)
        self._open: dict[str, tuple[float, int, str]] = {}
        self._timer: threading.Timer | None = None
        self.totals: dict[str, int] = {}

    def record(self, kind: str, what: str, *, first_detail: str = "") -> None:
        """One event of ``kind``; ``what`` names a batch of them ("connections closed: header
        timeout"); ``first_detail`` is said of the first one only (who it was)."""
        now = self._clock()
        emit_first = False
        with self._lock:
            self.totals[kind] = self.totals.get(kind, 0) + 1
            started = self._open.get(kind)
            if started is None:
                self._open[kind] = (now, 0, what)
                emit_first = True
            else:
                self._open[kind] = (started[0], started[1] + 1, what)
            self._schedule_flush()
        if emit_first:
            detail = f" ({first_detail})" if first_detail else ""
            self._log.warning(
                "%s: 1%s; more of these are counted and logged once per %g s",
                what,
                detail,
                self.interval_s,
            )
        self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log the counts of every kind whose interval is over; forget kinds that fell quiet."""
        now = self._clock() if now is None else now
        lines = []
        with self._lock:
            for kind, (start, count, what) in list(self._open.items()):
                if now - start < self.interval_s:
                    continue
                if count:
                    lines.append((what, count, now - start))
                    self._open[kind] = (now, 0, what)
                else:
                    del self._open[kind]
        for what, count, span in lines:
            self._log.warning("%s: %d in the last %.0f s", what, count, span)

    def _schedule_flush(self) -> None:
        # Counts still open when the flood stops are logged by this timer, not by the next
        # event (there may be none). A daemon thread, not the event loop: the flush must also
        # work for events recorded off the loop (log records of any thread).
        if self._timer is not None and self._timer.is_alive():
            return
        self._timer = threading.Timer(self.interval_s, self._flush_until_quiet)
        self._timer.daemon = True
        self._timer.start()

    def _flush_until_quiet(self) -> None:
        self.flush()
        with self._lock:
            self._timer = None
            if self._open:
                self._schedule_flush()


class SummarizingFilter(logging.Filter):
    """Turns other libraries' per-connection log lines into :class:`EventLogSummary` events.

    ``messages`` maps the start of a message (uvicorn's "Invalid HTTP request received.",
    asyncio's "socket.accept() out of system resource") to the words for a batch of them.
    """

    def __init__(self, summary: EventLogSummary, messages: dict[str, str]) -> None:
        super().__init__()
        self._summary = summary
        self._messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for start, what in self._messages.items():
            if message.startswith(start):
                self._summary.record(f"{record.name}:{start}", what)
                return False
        return True
