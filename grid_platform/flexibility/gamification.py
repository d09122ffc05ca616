"""Gamification scoring (flexibility.md §7): pure functions returning DataFrames.

Displayed points come from here, never from ``reward_points_actual``.

* Layer 1, per 15-min interval and device (``interval_points``): in community **surplus**
  intervals (production > consumption) ``ln(1 + kWh) × effort × 10``, the effort tier
  (0.25×, 0.5×, 1.0×, 1.5×, 2.0×) chosen by the ratio of the consumption to the device
  baseline at that local quarter-hour (below 0.75, below 1.0, below 1.25, below 1.5, above);
  in **deficit** intervals with production a pool of ``production_kWh × 10`` points shared in
  proportion to consumption; without production 0.
* Layer 2, per settled commitment of a device (``bonus_points``):
  ``shifted_kwh × 15 × shift_effort × event × accuracy × streak``, where ``shifted_kwh`` is
  the window consumption above the baseline, ``shift_effort`` the tier of window
  consumption / baseline, ``event`` 1.5 when the window fell in community surplus (else 1.0),
  ``accuracy = min(1, shifted / estimate)`` (estimate = reward_points_estimated / 10; 1
  without estimate) and ``streak = min(1.5, 1 + streak_level × 0.05)``. Granted only if the
  shift is >= 5 % of the baseline and >= 0.05 kWh; capped at 2 × the device's 30-day
  average of daily points.
* ``daily_points`` = Σ layer 1 + Σ layer 2 per member and local day; a community budget
  scales a larger total down proportionally. ``leaderboard`` sums a season.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, timedelta

import numpy as np
import pandas as pd

EFFORT_BOUNDS = np.array([0.75, 1.0, 1.25, 1.5])
EFFORT_MULTIPLIERS = np.array([0.25, 0.5, 1.0, 1.5, 2.0])
POINTS_PER_LN_KWH = 10.0
POOL_POINTS_PER_KWH = 10.0
BONUS_POINTS_PER_KWH = 15.0
SURPLUS_EVENT_MULT = 1.5
MIN_SHIFT_SHARE, MIN_SHIFT_KWH = 0.05, 0.05
STREAK_STEP, STREAK_MAX = 0.05, 1.5
CAP_FACTOR = 2.0
AVERAGE_DAYS = 30
LEVEL_POINTS = 100
BADGES = (("first-shift", "actions", 1), ("peak-saver", "actions", 5), ("solar-champion", "points", 500),
          ("streak-3", "streak", 3))
LEADERBOARD_COLUMNS = ["user_id", "season_points", "season_base_points", "season_bonus_points", "season_rank",
                       "total_members", "season_start", "season_end"]
DAILY_COLUMNS = ["user_id", "day", "base_points", "bonus_points", "daily_points"]


def effort_multiplier(ratio: np.ndarray) -> np.ndarray:
    ratio = np.nan_to_num(np.asarray(ratio, dtype="float64"), nan=0.0, posinf=np.inf)
    return EFFORT_MULTIPLIERS[np.searchsorted(EFFORT_BOUNDS, ratio, side="right")]


def _local(ts: pd.Series, tz: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).tz_convert(tz)


def _slot(local: pd.DatetimeIndex) -> np.ndarray:
    return (np.asarray(local.hour) * 60 + np.asarray(local.minute)) // 15


def device_baseline(history: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Mean consumption per device and local quarter-hour of day over ``history`` (15-min rows)."""
    local = _local(history["ts"], tz)
    frame = pd.DataFrame({"device_id": history["device_id"].to_numpy(), "slot": _slot(local),
                          "kwh": pd.to_numeric(history["consumption_kwh"], errors="coerce").fillna(0.0).to_numpy()})
    return frame.groupby(["device_id", "slot"], as_index=False)["kwh"].mean().rename(columns={"kwh": "baseline_kwh"})


def _with_baseline(consumption: pd.DataFrame, baseline: pd.DataFrame, tz: str) -> pd.DataFrame:
    frame = pd.DataFrame({"ts": pd.to_datetime(consumption["ts"], utc=True),
                          "device_id": consumption["device_id"].to_numpy(),
                          "kwh": pd.to_numeric(consumption["consumption_kwh"], errors="coerce").fillna(0.0).to_numpy()})
    frame["slot"] = _slot(_local(frame["ts"], tz))
    return frame.merge(baseline, on=["device_id", "slot"], how="left")


def _ratio(used: np.ndarray, base: np.ndarray) -> np.ndarray:
    base = np.nan_to_num(base, nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, used / np.where(base > 0, base, 1.0), np.where(used > 0, np.inf, 1.0))


def interval_points(consumption: pd.DataFrame, community: pd.DataFrame, baseline: pd.DataFrame,
                    tz: str) -> pd.DataFrame:
    """Layer 1: ``ts, device_id, kind, settlement_points`` for every 15-min device reading.

    ``community``: 15-min ``ts, production_kwh, consumption_kwh`` of the community.
    """
    frame = _with_baseline(consumption, baseline, tz)
    comm = pd.DataFrame({"ts": pd.to_datetime(community["ts"], utc=True),
                         "production": pd.to_numeric(community["production_kwh"], errors="coerce").fillna(0.0),
                         "demand": pd.to_numeric(community["consumption_kwh"], errors="coerce").fillna(0.0)})
    frame = frame.merge(comm, on="ts", how="left").fillna({"production": 0.0, "demand": 0.0})
    surplus = (frame["production"] > frame["demand"]).to_numpy()
    deficit = ~surplus & (frame["production"] > 0).to_numpy()
    kwh = frame["kwh"].to_numpy()
    surplus_points = np.log1p(kwh) * effort_multiplier(_ratio(kwh, frame["baseline_kwh"].to_numpy())) \
        * POINTS_PER_LN_KWH
    total = frame.groupby("ts")["kwh"].transform("sum").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, kwh / np.where(total > 0, total, 1.0), 0.0)
    pool_points = frame["production"].to_numpy() * POOL_POINTS_PER_KWH * share
    return pd.DataFrame({
        "ts": frame["ts"], "device_id": frame["device_id"],
        "kind": np.select([surplus, deficit], ["surplus", "deficit"], "none"),
        "settlement_points": np.select([surplus, deficit], [surplus_points, pool_points], 0.0),
    })


def streak_levels(action_days: pd.DataFrame, as_of: date) -> pd.Series:
    """Consecutive local days ending at ``as_of`` with at least one settled commitment, per user."""
    levels = {}
    for user, days in action_days.groupby("user_id")["day"]:
        have = set(days)
        level, day = 0, as_of
        while day in have:
            level += 1
            day -= timedelta(days=1)
        levels[user] = level
    return pd.Series(levels, dtype="int64", name="streak_level")


def bonus_points(settled: pd.DataFrame, consumption: pd.DataFrame, baseline: pd.DataFrame,
                 community: pd.DataFrame, *, streaks: pd.Series, average_daily: pd.Series, tz: str) -> pd.DataFrame:
    """Layer 2 per settled commitment: ``commitment_id, user_id, device_id, shifted_kwh, bonus_points``.

    ``settled``: ``commitment_id, user_id, device_id, period_start, period_end,
    reward_points_estimated``; ``streaks``: level by user; ``average_daily``: the device's
    30-day average of daily points (by device).
    """
    columns = ["commitment_id", "user_id", "device_id", "shifted_kwh", "bonus_points"]
    if settled.empty:
        return pd.DataFrame(columns=columns)
    frame = _with_baseline(consumption, baseline, tz)
    comm = pd.DataFrame({"ts": pd.to_datetime(community["ts"], utc=True),
                         "net": pd.to_numeric(community["production_kwh"], errors="coerce").fillna(0.0)
                         - pd.to_numeric(community["consumption_kwh"], errors="coerce").fillna(0.0)})
    rows = []
    for c in settled.itertuples(index=False):
        start, end = pd.Timestamp(c.period_start).tz_convert("UTC"), pd.Timestamp(c.period_end).tz_convert("UTC")
        inside = frame[(frame["device_id"] == c.device_id) & (frame["ts"] >= start) & (frame["ts"] < end)]
        used, base = float(inside["kwh"].sum()), float(inside["baseline_kwh"].fillna(0.0).sum())
        shifted = used - base
        share = shifted / base if base > 0 else (math.inf if shifted > 0 else 0.0)
        net = float(comm.loc[(comm["ts"] >= start) & (comm["ts"] < end), "net"].sum())
        estimate = (c.reward_points_estimated or 0) / 10.0
        accuracy = min(1.0, shifted / estimate) if estimate > 0 else 1.0
        level = int(streaks.get(c.user_id, 0))
        bonus = 0.0
        if base > 0 and shifted >= MIN_SHIFT_KWH and share >= MIN_SHIFT_SHARE:
            bonus = (shifted * BONUS_POINTS_PER_KWH * float(effort_multiplier(np.array([used / base]))[0])
                     * (SURPLUS_EVENT_MULT if net > 0 else 1.0) * max(accuracy, 0.0)
                     * min(STREAK_MAX, 1 + level * STREAK_STEP))
            bonus = min(bonus, CAP_FACTOR * float(np.nan_to_num(average_daily.get(c.device_id, 0.0))))
        rows.append((c.commitment_id, c.user_id, c.device_id, round(shifted, 3), round(bonus, 3)))
    return pd.DataFrame(rows, columns=columns)


def daily_points(day: date, intervals: pd.DataFrame, bonus: pd.DataFrame, members: pd.DataFrame,
                 budget: float | None = None) -> pd.DataFrame:
    """``user_id, day, base_points, bonus_points, daily_points`` of every member for local ``day``.

    ``members``: ``device_id, user_id`` (the account points are shown to); a total above
    ``budget`` is scaled down proportionally.
    """
    by_device = intervals.groupby("device_id")["settlement_points"].sum()
    base = members.assign(base_points=members["device_id"].map(by_device).fillna(0.0))
    base = base.groupby("user_id", as_index=False)["base_points"].sum()
    extra = bonus.groupby("user_id")["bonus_points"].sum() if not bonus.empty else pd.Series(dtype="float64")
    out = base.assign(bonus_points=base["user_id"].map(extra).fillna(0.0).astype("float64"))
    total = out["base_points"].sum() + out["bonus_points"].sum()
    if budget is not None and total > budget > 0:
        factor = budget / total
        out["base_points"] *= factor
        out["bonus_points"] *= factor
    out["base_points"] = out["base_points"].round(2)
    out["bonus_points"] = out["bonus_points"].round(2)
    out["daily_points"] = (out["base_points"] + out["bonus_points"]).round(2)
    out.insert(1, "day", day)
    return out[DAILY_COLUMNS].sort_values("user_id").reset_index(drop=True)


def average_daily_points(daily: pd.DataFrame, members: pd.DataFrame, as_of: date,
                         days: int = AVERAGE_DAYS) -> pd.Series:
    """Each device's average daily points over the ``days`` days before ``as_of`` (by device)."""
    recent = daily[(daily["day"] < as_of) & (daily["day"] >= as_of - timedelta(days=days))]
    per_user = recent.groupby("user_id")["daily_points"].sum() / days
    return members.set_index("device_id")["user_id"].map(per_user).fillna(0.0)


def season_bounds(day: date, months: int = 3) -> tuple[date, date]:
    """The season containing ``day``: blocks of ``months`` months from January (quarters by default)."""
    if months < 1 or 12 % months:
        raise ValueError(f"season length must divide the year in whole months, got {months}")
    first_month = (day.month - 1) // months * months + 1
    start = date(day.year, first_month, 1)
    end_month = first_month + months
    end = date(day.year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1) - timedelta(days=1)
    return start, end


def leaderboard(daily: pd.DataFrame, member_ids: Iterable[str], season: tuple[date, date]) -> pd.DataFrame:
    """Season rows of every member: points, base and bonus parts, rank (1 = best; ties share), members."""
    start, end = season
    members = sorted(set(member_ids))
    inside = daily[(daily["day"] >= start) & (daily["day"] <= end)]
    sums = inside.groupby("user_id")[["daily_points", "base_points", "bonus_points"]].sum()
    sums = sums.reindex(members).fillna(0.0)
    out = pd.DataFrame({
        "user_id": members,
        "season_points": sums["daily_points"].round(2).to_numpy(),
        "season_base_points": sums["base_points"].round(2).to_numpy(),
        "season_bonus_points": sums["bonus_points"].round(2).to_numpy(),
    })
    out["season_rank"] = out["season_points"].rank(method="min", ascending=False).astype("int64")
    out["total_members"] = len(members)
    out["season_start"], out["season_end"] = start, end
    return out.sort_values(["season_rank", "user_id"]).reset_index(drop=True)[LEADERBOARD_COLUMNS]


def level(points: float) -> tuple[int, int]:
    """(level, next_level_at): ``max(1, points // 100 + 1)``; 0 -> (1, 100), 250 -> (3, 300)."""
    lvl = max(1, int(points // LEVEL_POINTS) + 1)
    return lvl, lvl * LEVEL_POINTS


def longest_streak(days: Iterable[date]) -> int:
    ordered = sorted(set(days))
    best = run = 0
    previous = None
    for day in ordered:
        run = run + 1 if previous is not None and day - previous == timedelta(days=1) else 1
        best, previous = max(best, run), day
    return best


def badges(actions: int, points: float, streak_days: int) -> list[str]:
    values = {"actions": actions, "points": points, "streak": streak_days}
    return [name for name, measure, threshold in BADGES if values[measure] >= threshold]


def summary(user_id: str, board: pd.DataFrame, daily: pd.DataFrame, action_days: Iterable[date],
            actions: int, season: tuple[date, date]) -> dict:
    """The ``GET /api/gamification`` body of one member."""
    row = board[board["user_id"] == user_id] if not board.empty else board
    mine = daily[daily["user_id"] == user_id] if not daily.empty else daily
    if len(row):
        r = row.iloc[0]
        season_view = {k: (r[k].isoformat() if isinstance(r[k], date) else r[k]) for k in LEADERBOARD_COLUMNS[1:]}
        season_view = {k: (int(v) if k in ("season_rank", "total_members") else v) for k, v in season_view.items()}
    else:
        start, end = season
        points = float(mine[(mine["day"] >= start) & (mine["day"] <= end)]["daily_points"].sum()) if len(mine) else 0.0
        season_view = {"season_points": round(points, 2), "season_base_points": None, "season_bonus_points": None,
                       "season_rank": None, "total_members": None, "season_start": start.isoformat(),
                       "season_end": end.isoformat()}
    points = float(season_view["season_points"])
    lvl, next_at = level(points)
    streak = longest_streak(action_days)
    return {"user_id": user_id, **season_view, "level": lvl, "next_level_at": next_at, "actions": actions,
            "streak_days": streak, "badges": badges(actions, points, streak)}


def score_day(day: date, tz: str, *, members: pd.DataFrame, consumption: pd.DataFrame, history: pd.DataFrame,
              community: pd.DataFrame, settled: pd.DataFrame, previous_daily: pd.DataFrame,
              action_days: pd.DataFrame, budget: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily points of local ``day`` and the bonus rows behind them (the scoring asset's partition).

    ``consumption``/``community``: 15-min rows of the day; ``history``: 15-min device rows of
    the previous 30 days (baseline); ``previous_daily``: earlier ``daily_points`` rows (30-day
    averages); ``action_days``: ``user_id, day`` of settled commitments (streaks).
    """
    baseline = device_baseline(history, tz)
    intervals = interval_points(consumption, community, baseline, tz)
    bonus = bonus_points(settled, consumption, baseline, community, streaks=streak_levels(action_days, day),
                         average_daily=average_daily_points(previous_daily, members, day), tz=tz)
    return daily_points(day, intervals, bonus, members, budget), bonus
