"""The generated range's time: epoch seconds, UTC day folders and fast ISO strings.

Why a table-driven clock: formatting an event time is the generator's hottest step, and a list
lookup of 'HH:MM:SS' is several times faster than strftime. Times are whole epoch seconds (UTC).
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt

DAY = 86_400
WEEK = 7 * DAY

_HMS: list[str] = []


def hms_table() -> list[str]:
    """All 86,400 'HH:MM:SS' strings, built once per process."""
    if not _HMS:
        _HMS.extend(f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60))
    return _HMS


class Clock:
    """Epoch seconds <-> ISO strings and day folders for the generated range."""

    def __init__(self, start_date: dt.date, days: int) -> None:
        self.t0 = calendar.timegm(start_date.timetuple())
        self.days = days
        self.end = self.t0 + days * DAY
        #: prefix[d + 1] = 'YYYY-MM-DDT' of day index d, for d in -1 .. days + 1 (local offsets)
        self.prefix = [(start_date + dt.timedelta(days=d)).isoformat() + "T" for d in range(-1, days + 2)]
        self.folders = [f"date={(start_date + dt.timedelta(days=d)).isoformat()}" for d in range(days)]
        self.hms = hms_table()

    def utc(self, t: int) -> str:
        """'YYYY-MM-DDTHH:MM:SS' (UTC, no suffix) of epoch second t."""
        d, s = divmod(t - self.t0, DAY)
        return self.prefix[d + 1] + self.hms[s]

    def day(self, t: int) -> int:
        """Index of t's UTC day in the range (0 = start date)."""
        return (t - self.t0) // DAY

    def next_midnight(self, t: int) -> int:
        """Epoch second of the UTC midnight after t."""
        return self.t0 + ((t - self.t0) // DAY + 1) * DAY


def extend_by_day(buffers: list[list[str]], t0: int, times: list[int], lines: list[str], lo: int, hi: int) -> None:
    """Append lines[lo:hi] (times ascending) to their day buffers, one slice per day."""
    while lo < hi:
        day = (times[lo] - t0) // DAY
        cut = bisect.bisect_left(times, t0 + (day + 1) * DAY, lo, hi)
        buffers[day].extend(lines[lo:cut])
        lo = cut
