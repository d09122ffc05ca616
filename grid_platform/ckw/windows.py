"""Local-day arithmetic for quarter-hour data in Europe/Zurich.

Source times are local; storage is UTC. A local day has 96 quarter-hours, 92 on the spring
DST day and 100 on the autumn one, which falls out of measuring the day in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

QUARTER_HOUR = timedelta(minutes=15)
# The API answers 400 beyond 31 days and its RAML says 30: stay safe under both readings.
MAX_SPAN = timedelta(days=30)


def local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def local_days_bounds(first: date, last: date, tz: str) -> tuple[datetime, datetime]:
    """UTC [start, end) covering the local days first..last inclusive."""
    return local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)


def expected_slots(day: date, tz: str) -> int:
    start, end = local_days_bounds(day, day, tz)
    return int((end - start) / QUARTER_HOUR)


def split_span(start: datetime, end: datetime, max_span: timedelta = MAX_SPAN) -> list[tuple[datetime, datetime]]:
    """Consecutive [s, e) windows covering [start, end), each at most ``max_span`` long."""
    if end <= start:
        return []
    windows = []
    cursor = start
    while cursor < end:
        stop = min(cursor + max_span, end)
        windows.append((cursor, stop))
        cursor = stop
    return windows


def rfc3339_utc(ts: datetime) -> str:
    """UTC bounds make the API answer in UTC, which spares one timezone conversion."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
