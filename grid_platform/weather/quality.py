"""The hourly weather frame and its plausibility rules.

``clean_hourly`` is the one path every source goes through before the risk model sees it:

1. implausible values are **rejected** (set to null, never used) and listed with the rule
   and the evidence: an isolated wind spike (speed >= ``spike_min_ms`` and more than
   ``spike_jump_ms`` above *both* neighbour hours, e.g. Kassel's 66 m/s between 4 and
   4 m/s), values out of physical range, temperature spikes;
2. each point gets a complete hourly grid over whole network-local days, so a missing
   hour is a visible null rather than an absent row;
3. gaps of at most ``max_gap_hours`` consecutive hours between two valid values are filled by
   linear interpolation (flag ``interpolated``); longer gaps stay null, and the day they fall
   in gets no level (see ``grid_platform.risk.pointdays``).

All steps are vectorised over the whole frame (points are contiguous after sorting).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

HOURLY_COLUMNS = [
    "point_id", "lat", "lon", "elevation_m", "ts_utc", "wind_speed_ms", "wind_gust_ms", "temp_c",
    "source", "gust_derived", "interpolated", "quality_flags",
]
VALUE_COLUMNS = ["wind_speed_ms", "wind_gust_ms", "temp_c"]
POINT_COLUMNS = ["point_id", "lat", "lon", "elevation_m", "source"]
FLAG_COLUMNS = ["point_id", "ts_utc", "variable", "value", "rule", "detail"]
HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True)
class QualityRules:
    """Plausibility rules; defaults mirror ``risk/thresholds.yaml`` (section weather_quality)."""

    spike_min_ms: float = 20.0
    spike_jump_ms: float = 15.0
    wind_max_ms: float = 60.0
    gust_max_ms: float = 90.0
    temp_min_c: float = -60.0
    temp_max_c: float = 50.0
    temp_jump_c: float = 12.0
    max_gap_hours: int = 3


def empty_hourly() -> pd.DataFrame:
    return pd.DataFrame({
        "point_id": pd.Series(dtype=object), "lat": pd.Series(dtype=float), "lon": pd.Series(dtype=float),
        "elevation_m": pd.Series(dtype=float), "ts_utc": pd.Series(dtype="datetime64[ns, UTC]"),
        **{c: pd.Series(dtype=float) for c in VALUE_COLUMNS},
        "source": pd.Series(dtype=object), "gust_derived": pd.Series(dtype=bool),
        "interpolated": pd.Series(dtype=bool), "quality_flags": pd.Series(dtype=object),
    })


def _neighbours(df: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of the previous and next hour of the same point (NaN when that hour is absent)."""
    values = df[column].to_numpy(float)
    ts = df["ts_utc"].to_numpy("datetime64[ns]").astype(np.int64)
    pid = df["point_id"].to_numpy()
    prev = np.full(len(df), np.nan)
    nxt = np.full(len(df), np.nan)
    if len(df) > 1:
        adjacent = (pid[1:] == pid[:-1]) & (ts[1:] - ts[:-1] == HOUR_NS)
        prev[1:] = np.where(adjacent, values[:-1], np.nan)
        nxt[:-1] = np.where(adjacent, values[1:], np.nan)
    return prev, nxt


def _fmt(x: np.ndarray) -> np.ndarray:
    return np.array(["n/a" if np.isnan(v) else f"{v:.1f}" for v in x], dtype=object)


def find_implausible(hourly: pd.DataFrame, rules: QualityRules) -> pd.DataFrame:
    """One row per rejected value: ``point_id, ts_utc, variable, value, rule, detail``.

    ``hourly`` must be sorted by point and time. A value may break several rules (one row each).
    """
    found: list[pd.DataFrame] = []

    def add(mask: np.ndarray, variable: str, rule: str, detail: Callable[[np.ndarray], np.ndarray]) -> None:
        if mask.any():
            # Evidence is formatted for the (few) rejected rows only.
            found.append(hourly.loc[mask, ["point_id", "ts_utc"]].assign(
                variable=variable, value=hourly.loc[mask, variable].to_numpy(float), rule=rule, detail=detail(mask)))

    speed = hourly["wind_speed_ms"].to_numpy(float)
    gust = hourly["wind_gust_ms"].to_numpy(float)
    temp = hourly["temp_c"].to_numpy(float)
    prev, nxt = _neighbours(hourly, "wind_speed_ms")
    tprev, tnxt = _neighbours(hourly, "temp_c")
    with np.errstate(invalid="ignore"):
        spike = ((speed >= rules.spike_min_ms) & (speed - prev > rules.spike_jump_ms)
                 & (speed - nxt > rules.spike_jump_ms))
        add(spike, "wind_speed_ms", "isolated_spike",
            lambda m: _fmt(speed[m]) + " m/s between neighbour hours " + _fmt(prev[m]) + " / " + _fmt(nxt[m])
            + f" m/s (jump > {rules.spike_jump_ms:g} m/s)")
        add((speed < 0) | (speed > rules.wind_max_ms), "wind_speed_ms", "out_of_range",
            lambda m: _fmt(speed[m]) + f" m/s outside [0, {rules.wind_max_ms:g}]")
        add((gust < 0) | (gust > rules.gust_max_ms), "wind_gust_ms", "out_of_range",
            lambda m: _fmt(gust[m]) + f" m/s outside [0, {rules.gust_max_ms:g}]")
        add((temp < rules.temp_min_c) | (temp > rules.temp_max_c), "temp_c", "out_of_range",
            lambda m: _fmt(temp[m]) + f" °C outside [{rules.temp_min_c:g}, {rules.temp_max_c:g}]")
        add(np.abs(temp - (tprev + tnxt) / 2) > rules.temp_jump_c, "temp_c", "isolated_spike",
            lambda m: _fmt(temp[m]) + " °C between neighbour hours " + _fmt(tprev[m]) + " / " + _fmt(tnxt[m]))
    if not found:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FLAG_COLUMNS}).astype(
            {"ts_utc": "datetime64[ns, UTC]", "value": float})
    return pd.concat(found, ignore_index=True)[FLAG_COLUMNS].sort_values(
        ["point_id", "ts_utc", "variable", "rule"], kind="stable", ignore_index=True)


def reject(hourly: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """Null every flagged value and record ``variable:rule`` in ``quality_flags``."""
    out = hourly.copy()
    if flags.empty:
        return out
    labels = (flags["variable"] + ":" + flags["rule"]).groupby([flags["point_id"], flags["ts_utc"]]).agg(",".join)
    key = pd.MultiIndex.from_frame(out[["point_id", "ts_utc"]])
    new = pd.Series(labels.reindex(key).to_numpy(), index=out.index, dtype=object)
    prior = out["quality_flags"].astype(object)
    out["quality_flags"] = prior.where(new.isna(), (prior + ",").fillna("") + new)
    for variable, group in flags.groupby("variable"):
        rows = pd.MultiIndex.from_frame(group[["point_id", "ts_utc"]]).unique()
        out.loc[key.isin(rows), variable] = np.nan
    return out


def complete_hours(hourly: pd.DataFrame, local_tz: str) -> pd.DataFrame:
    """Reindex every point onto all UTC hours of the whole local days its data touches.

    Added hours carry the point's attributes and null values, so "missing" is explicit.
    """
    if hourly.empty:
        return hourly.copy()
    local_day = hourly["ts_utc"].dt.tz_convert(local_tz).dt.tz_localize(None).dt.normalize()
    by_point = local_day.groupby(hourly["point_id"], sort=True)

    def utc_midnight(days: pd.Series) -> np.ndarray:
        return (days.dt.tz_localize(local_tz, ambiguous=True, nonexistent="shift_forward")
                .dt.tz_convert("UTC").to_numpy("datetime64[ns]"))

    first = utc_midnight(by_point.min())
    last = utc_midnight(by_point.max() + pd.Timedelta(days=1))
    n_hours = ((last - first) // np.timedelta64(1, "h")).astype(np.int64)
    offsets = np.arange(n_hours.sum()) - np.repeat(np.cumsum(n_hours) - n_hours, n_hours)
    grid = pd.DataFrame({
        "point_id": np.repeat(by_point.min().index.to_numpy(), n_hours),
        "ts_utc": pd.to_datetime(np.repeat(first, n_hours) + offsets * np.timedelta64(1, "h"), utc=True),
    })
    points = hourly.drop_duplicates("point_id")[POINT_COLUMNS]
    merged = grid.merge(hourly.drop(columns=[c for c in POINT_COLUMNS if c != "point_id"]),
                        on=["point_id", "ts_utc"], how="left").merge(points, on="point_id", how="left")
    merged["gust_derived"] = merged["gust_derived"].eq(True)
    merged["interpolated"] = merged["interpolated"].eq(True)
    return merged[HOURLY_COLUMNS]


def interpolate_short_gaps(hourly: pd.DataFrame, max_gap_hours: int,
                           columns: tuple[str, ...] = tuple(VALUE_COLUMNS)) -> pd.DataFrame:
    """Fill runs of at most ``max_gap_hours`` missing hours between two valid hours of a point.

    Linear in time. Longer runs, and runs at the start or end of a point's series, stay null.
    ``hourly`` must be sorted by point and time (``complete_hours`` output).
    """
    out = hourly.copy()
    n = len(out)
    if n == 0:
        return out
    pid = out["point_id"].to_numpy()
    hours = out["ts_utc"].to_numpy("datetime64[ns]").astype(np.int64) // HOUR_NS
    idx = np.arange(n)
    starts = np.r_[True, pid[1:] != pid[:-1]]
    group_first = np.maximum.accumulate(np.where(starts, idx, 0))
    ends = np.r_[pid[1:] != pid[:-1], True]
    group_last = np.minimum.accumulate(np.where(ends, idx, n - 1)[::-1])[::-1]
    filled_any = np.zeros(n, dtype=bool)
    for column in columns:
        values = out[column].to_numpy(float).copy()
        valid = ~np.isnan(values)
        last = np.maximum.accumulate(np.where(valid, idx, -1))
        nxt = np.minimum.accumulate(np.where(valid, idx, n)[::-1])[::-1]
        fill = (~valid & (last >= group_first) & (nxt <= group_last))
        lo, hi = np.where(fill, last, 0), np.where(fill, nxt, 0)
        gap = hours[hi] - hours[lo] - 1
        fill &= gap <= max_gap_hours
        frac = (hours - hours[lo]) / np.where(fill, hours[hi] - hours[lo], 1)
        values[fill] = (values[lo] + (values[hi] - values[lo]) * frac)[fill]
        out[column] = values
        filled_any |= fill
    out["interpolated"] = out["interpolated"].to_numpy(bool) | filled_any
    return out


def clean_hourly(hourly: pd.DataFrame, rules: QualityRules, local_tz: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject implausible values, complete the hourly grid, interpolate short gaps.

    Returns ``(hourly, flags)``; ``flags`` lists every rejected value with rule and evidence.
    """
    frame = hourly.sort_values(["point_id", "ts_utc"], kind="stable", ignore_index=True)
    if frame.duplicated(["point_id", "ts_utc"]).any():
        raise ValueError("hourly weather has duplicate (point_id, ts_utc) rows")
    if len(frame) and (frame["ts_utc"].to_numpy("datetime64[ns]").astype(np.int64) % HOUR_NS != 0).any():
        raise ValueError("hourly weather must be stamped on whole UTC hours")
    flags = find_implausible(frame, rules)
    frame = reject(frame, flags)
    frame = complete_hours(frame, local_tz)
    return interpolate_short_gaps(frame, rules.max_gap_hours), flags
