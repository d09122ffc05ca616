"""Period keys of the day and their fixed clocks (flexibility.md §2), by local start hour."""

from __future__ import annotations

# key: (start hours, fixed clock)
PERIODS: dict[str, tuple[range | tuple[int, ...], str]] = {
    "night": ((0, 1, 2, 3, 4, 21, 22, 23), "22:00–06:00"),
    "early_morning": (range(5, 8), "06:00–08:00"),
    "morning": (range(8, 11), "08:00–10:00"),
    "late_morning": ((11,), "11:00–12:00"),
    "midday": (range(12, 14), "12:00–14:00"),
    "afternoon": (range(14, 17), "14:00–17:00"),
    "evening": (range(17, 21), "17:00–21:00"),
}
_BY_HOUR = {hour: key for key, (hours, _) in PERIODS.items() for hour in hours}
EN_DASH = "\u2013"


def period_key(hour: int) -> str:
    """The period key of a local start hour (0-23)."""
    try:
        return _BY_HOUR[int(hour)]
    except KeyError:
        raise ValueError(f"hour must be within 0..23, got {hour!r}") from None


def fixed_clock(key: str) -> str:
    return PERIODS[key][1]
