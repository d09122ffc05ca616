"""Suggestions (flexibility.md §2): which windows a participant sees, in which order, with which fields.

``build_suggestions`` is pure: the windows table, the caller's device and committed
suggestion ids and ``now`` fully decide the answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from grid_platform.flexibility.periods import EN_DASH, fixed_clock, period_key

MAX_SUGGESTIONS = 8
LATEST_END = time(21, 0)  # windows ending after 21:00 local are dropped
TOMORROW_PERIOD = "evening"
SUGGESTION_TYPE = "shift-consumption"


def suggestion_dates(now: datetime, tz: str) -> tuple[date, date]:
    today = now.astimezone(ZoneInfo(tz)).date()
    return today, today + timedelta(days=1)


def _timestamp(value: Any) -> pd.Timestamp | None:
    """A UTC timestamp, naive values read as UTC; None when unusable."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT or pd.isna(ts):
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _clean(windows: pd.DataFrame) -> list[dict]:
    """Well-formed rows (id, date, start before end, finite community_kwh), times normalised to UTC."""
    rows = []
    for row in windows.to_dict("records"):
        start, end = _timestamp(row.get("window_start")), _timestamp(row.get("window_end"))
        community_kwh = _number(row.get("community_kwh"))
        window, ts_date = row.get("window_id"), _day(row.get("ts_date"))
        if not isinstance(window, str) or not window or ts_date is None or start is None or end is None \
                or end <= start or community_kwh is None:
            continue
        device = row.get("device_id")
        rows.append({**row, "ts_date": ts_date, "window_start": start, "window_end": end,
                     "community_kwh": community_kwh, "device_id": device if isinstance(device, str) and device else None})
    return rows


def build_suggestions(windows: pd.DataFrame, *, device_id: str | None, committed: Iterable[str], now: datetime,
                      tz: str, limit: int = MAX_SUGGESTIONS) -> list[dict]:
    """The suggestion list of §2, steps 2-8, for one caller.

    ``windows``: ``flex_windows`` rows of the caller's community (community and device rows);
    ``committed``: suggestion ids the caller holds in status ``committed``.
    """
    zone = ZoneInfo(tz)
    now_utc = pd.Timestamp(now).tz_convert("UTC")
    today, tomorrow = suggestion_dates(now, tz)
    held = set(committed)
    rows = _clean(windows)
    device_rows: dict[tuple, dict] = {}
    if device_id is not None:
        for row in sorted((r for r in rows if r["device_id"] == device_id), key=lambda r: (r["source"], r["window_id"])):
            device_rows.setdefault((row["window_start"], row["window_end"]), row)
    picked = []
    for row in rows:
        if row["device_id"] is not None or row["ts_date"] not in (today, tomorrow) or row["window_end"] <= now_utc:
            continue
        start_local = row["window_start"].tz_convert(zone)
        latest = pd.Timestamp(datetime.combine(start_local.date(), LATEST_END), tz=zone)
        if row["window_end"].tz_convert(zone) > latest or row["window_id"] in held:
            continue
        picked.append((row, device_rows.get((row["window_start"], row["window_end"]))))
    picked.sort(key=lambda p: (
        p[1] is None,
        -(_number(p[1].get("estimated_kwh")) or 0.0) if p[1] is not None else 0.0,
        -p[0]["community_kwh"],
        p[0]["window_start"], p[0]["window_id"],
    ))
    return [_item(row, device_row, today, zone) for row, device_row in picked[:limit]]


def _item(row: dict, device_row: dict | None, today: date, zone: ZoneInfo) -> dict:
    start_local = row["window_start"].tz_convert(zone)
    end_local = row["window_end"].tz_convert(zone)
    from_period = TOMORROW_PERIOD if start_local.date() == today + timedelta(days=1) else ""
    own_clock = f"{start_local:%H:%M}{EN_DASH}{end_local:%H:%M}"
    if device_row is None:
        impact, reward, confidence = None, None, _number(row.get("confidence"))
    else:
        impact = _number(device_row.get("estimated_kwh"))
        points = device_row.get("reward_points_estimated")
        reward = 0 if points is None or pd.isna(points) else int(points)
        confidence = _number(device_row.get("confidence"))
    return {
        "id": row["window_id"],
        "suggestion_type": SUGGESTION_TYPE,
        "period_start": row["window_start"].isoformat(),
        "period_end": row["window_end"].isoformat(),
        "from_period": from_period,
        "clock_range": fixed_clock(from_period) if from_period else own_clock,
        "to_is_tomorrow": start_local.date() > today,
        "to_period": period_key(start_local.hour),
        "to_time": f"{start_local:%H:%M}",
        "impact_kwh_estimated": impact,
        "reward_points": reward,
        "confidence": confidence,
        "community_kwh": row["community_kwh"],
    }
