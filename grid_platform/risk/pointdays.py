"""Hourly weather -> per-point 8-hour windows and network-local days (risk-model.md §4-§5).

Windows: slot 0 = 00-08, 1 = 08-16, 2 = 16-24 local time; ``window_start`` is the naive local
``YYYY-MM-DDTHH:00:00``. A window is complete when every UTC hour it spans (7, 8 or 9 on DST
days) has both speed and gust; a day's wind values exist only when its three windows are
complete, its Tmax only when every hour has a temperature. Incomplete days keep their row
with null values and ``wind_complete`` / ``temp_complete`` = false, so "not assessed" is
visible and a heat streak is broken by them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grid_platform.risk.config import RiskConfig
from grid_platform.risk.levels import round_excess

WINDOW_COLUMNS = ["point_id", "date", "slot", "window_start", "wind_speed_max", "wind_gusts_max", "gust_excess",
                  "window_complete"]
DAY_COLUMNS = ["point_id", "lat", "lon", "elevation_m", "date", "wind_speed_max", "wind_gusts_max", "gust_excess",
               "temp_max_c", "wind_complete", "temp_complete", "hours_expected", "hours_missing_wind",
               "hours_missing_temp", "gust_derived", "forecast_model"]


def _expected_hours(keys: pd.DataFrame, window_hours: int, local_tz: str) -> np.ndarray:
    """UTC hours inside each local window ``(date, slot)`` (DST days have 7 or 9 in one slot)."""
    start = keys["date"] + pd.to_timedelta(keys["slot"] * window_hours, unit="h")
    end = start + pd.Timedelta(hours=window_hours)

    def utc(naive: pd.Series) -> pd.Series:
        return naive.dt.tz_localize(local_tz, ambiguous=True, nonexistent="shift_forward").dt.tz_convert("UTC")

    return ((utc(end) - utc(start)) // pd.Timedelta(hours=1)).to_numpy(np.int64)


def _local(hourly: pd.DataFrame, window_hours: int, local_tz: str) -> pd.DataFrame:
    local = hourly["ts_utc"].dt.tz_convert(local_tz).dt.tz_localize(None)
    return hourly.assign(date=local.dt.normalize(), slot=local.dt.hour // window_hours)


def point_windows(hourly: pd.DataFrame, cfg: RiskConfig, local_tz: str) -> pd.DataFrame:
    """One row per point, local date and slot with the window's wind maxima and excess."""
    wh = cfg.wind.window_hours
    frame = _local(hourly, wh, local_tz)
    both = frame["wind_speed_ms"].notna() & frame["wind_gust_ms"].notna()
    g = frame.assign(_both=both).groupby(["point_id", "date", "slot"], sort=True)
    out = g.agg(wind_speed_max=("wind_speed_ms", "max"), wind_gusts_max=("wind_gust_ms", "max"),
                hours_valid=("_both", "sum")).reset_index()
    keys = out[["date", "slot"]].drop_duplicates()
    keys = keys.assign(hours_expected=_expected_hours(keys, wh, local_tz))
    out = out.merge(keys, on=["date", "slot"], how="left")
    out["window_complete"] = out["hours_valid"].to_numpy() == out["hours_expected"].to_numpy()
    excess = round_excess(out["wind_gusts_max"].to_numpy(float) - out["wind_speed_max"].to_numpy(float), cfg.wind)
    complete = out["window_complete"].to_numpy()
    out["gust_excess"] = np.where(complete, excess, np.nan)
    out.loc[~complete, ["wind_speed_max", "wind_gusts_max"]] = np.nan
    start = out["date"] + pd.to_timedelta(out["slot"] * wh, unit="h")
    out["window_start"] = start.dt.strftime("%Y-%m-%dT%H:00:00")
    return out[WINDOW_COLUMNS]


def point_days(hourly: pd.DataFrame, cfg: RiskConfig, local_tz: str,
               windows: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per point and local date: daily wind (worst window), Tmax and completeness."""
    wh = cfg.wind.window_hours
    if windows is None:
        windows = point_windows(hourly, cfg, local_tz)
    frame = _local(hourly, wh, local_tz)
    g = frame.groupby(["point_id", "date"], sort=True)
    days = g.agg(lat=("lat", "first"), lon=("lon", "first"), elevation_m=("elevation_m", "first"),
                 speed_max=("wind_speed_ms", "max"), gusts_max=("wind_gust_ms", "max"),
                 temp_max_c=("temp_c", "max"), hours_present=("ts_utc", "size"),
                 hours_temp=("temp_c", "count"), gust_derived=("gust_derived", "any"),
                 forecast_model=("source", "first")).reset_index()
    wg = windows.groupby(["point_id", "date"], sort=True)
    wd = wg.agg(n_complete=("window_complete", "sum"), gust_excess=("gust_excess", "max")).reset_index()
    days = days.merge(wd, on=["point_id", "date"], how="left")
    n_slots = 24 // wh
    keys = pd.DataFrame({"date": np.repeat(days["date"].unique(), n_slots),
                         "slot": np.tile(np.arange(n_slots), days["date"].nunique())})
    expected = keys.assign(h=_expected_hours(keys, wh, local_tz)).groupby("date")["h"].sum()
    days["hours_expected"] = days["date"].map(expected).to_numpy(np.int64)
    valid_wind = frame.assign(_v=frame["wind_speed_ms"].notna() & frame["wind_gust_ms"].notna()).groupby(
        ["point_id", "date"], sort=True)["_v"].sum().to_numpy()
    days["hours_missing_wind"] = days["hours_expected"] - valid_wind
    days["hours_missing_temp"] = days["hours_expected"] - days["hours_temp"]
    days["wind_complete"] = (days["n_complete"] == n_slots).to_numpy()
    days["temp_complete"] = (days["hours_missing_temp"] == 0).to_numpy()
    days["wind_speed_max"] = days["speed_max"].where(days["wind_complete"])
    days["wind_gusts_max"] = days["gusts_max"].where(days["wind_complete"])
    days["gust_excess"] = days["gust_excess"].where(days["wind_complete"])
    days["temp_max_c"] = days["temp_max_c"].where(days["temp_complete"])
    return days[DAY_COLUMNS]
