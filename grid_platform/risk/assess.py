"""Fragment-level wind and heat assessment (risk-model.md §3-§5, §7 inputs).

Point-level rules run once per weather point-day (``assess_point_days``), then every fragment
in a vector's scope takes the values of its matched point for each date: wind for every
conductor except underground cables, escalated by the fragment's tree-strike tier; heat for
underground cables (and cable joints), baseline air model or, when soil data is given, the
two-axis model. A fragment without a point within reach keeps its row with a null level
(not assessed, grey) — it is never read as NORMAL.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import shapely

from grid_platform.risk.config import RiskConfig
from grid_platform.risk.fragments import IDENTITY, Fragments
from grid_platform.risk.levels import (
    GREEN,
    ORANGE,
    RED,
    colors,
    escalate_tree_strike,
    heat_days,
    wind_levels,
)
from grid_platform.risk.matching import geometries, match_by_date, nearest_points, to_utm

VECTORS = ("wind", "heat")
WIND_VALUES = ["gust_excess", "wind_speed_max", "wind_gusts_max"]
HEAT_VALUES = ["temp_max_c", "p90_threshold", "consecutive_heat_days", "altitude_band", "air_tier",
               "forecast_model"]
TWO_AXIS_VALUES = ["heat_status", "soil_status", "soil7_mean_c", "soil7_p90_c", "soil_asof_date"]
DAILY_COLUMNS = [
    *IDENTITY, "date", "risk_vector", "risk_level", "risk_color_hex", "gust_excess", "wind_speed_max",
    "wind_gusts_max", "temp_max_c", "p90_threshold", "consecutive_heat_days", "altitude_band", "forecast_model",
    "escalated_by_tree_strike", "is_vegetated_zone", "elevation_start_m", "elevation_end_m", "feature_geojson",
    # beyond the publication contract: provenance and the inputs of metrics and risk-km
    "point_id", "point_distance_m", "air_tier", "strike_tree_tier", "strike_tree_multiplier",
    "strike_density_per_km", "thermal_tier", "thermal_margin_c", "thermal_theta_max_c", "thermal_insulation",
    "escalated_by_thermal", *TWO_AXIS_VALUES,
]


class SoilDataStale(RuntimeError):
    """The two-axis heat model is on but the soil feed does not reach the assessed dates."""


def _day(value: date | datetime | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return (ts.tz_localize(None) if ts.tzinfo else ts).normalize()


def in_scope(conductor_type: pd.Series, vector: str, cfg: RiskConfig) -> np.ndarray:
    """Wind: every conductor but the excluded (underground) ones; heat: the configured cables."""
    if vector == "wind":
        return (~conductor_type.isin(cfg.wind.excluded_conductors)).to_numpy()
    return conductor_type.isin(cfg.heat.conductors).to_numpy()


def assess_point_days(point_days: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """Point-day rows sorted by (point, date) plus ``wind_level`` (before escalation) and the
    heat fields. Streaks run over the whole frame, so pass history together with the horizon."""
    if point_days.duplicated(["point_id", "date"]).any():
        raise ValueError("point days must be unique per (point_id, date)")
    codes = pd.factorize(point_days["point_id"], sort=True)[0]
    dates = point_days["date"].to_numpy("datetime64[D]")
    order = np.lexsort((dates, codes))
    days = point_days.iloc[order].reset_index(drop=True)
    heat = heat_days(codes[order], dates[order], days["temp_max_c"].to_numpy(float),
                     days["elevation_m"].to_numpy(float), cfg.heat)
    return days.assign(wind_level=wind_levels(days["gust_excess"].to_numpy(float), cfg.wind), **heat)


def soil_status(heat_points: pd.DataFrame, soil: pd.DataFrame, cfg: RiskConfig, today: date) -> pd.DataFrame:
    """Two-axis soil axis per heat point-day: ``point_id, date, soil_status, soil7_mean_c, soil_asof_date``.

    ``soil``: daily ``soil_point_id, lat, lon, date, soil_temp_1m_c``. The 7-day trailing mean
    exists only with 7 consecutive daily readings; ORANGE when it exceeds the soil P90 in a
    soil month. Each weather point takes the nearest soil point within reach, as of the
    latest valid reading up to ``soil_asof_max_days`` back. Raises ``SoilDataStale`` when no
    valid reading reaches ``today`` within that window (upstream silently switched heat off).
    """
    ta = cfg.two_axis
    s = soil.dropna(subset=["soil_temp_1m_c"]).copy()
    s["date"] = pd.to_datetime(s["date"]).dt.normalize()
    s = s.sort_values(["soil_point_id", "date"]).drop_duplicates(["soil_point_id", "date"], keep="last")
    # Reindex each soil point onto consecutive days so a missing day leaves the window incomplete.
    daily = (s.set_index("date").groupby("soil_point_id")["soil_temp_1m_c"]
             .resample("D").mean().rename("soil_temp_1m_c").reset_index())
    daily["soil7_mean_c"] = (daily.groupby("soil_point_id")["soil_temp_1m_c"]
                             .rolling(ta.soil_window_days, min_periods=ta.soil_window_days).mean()
                             .reset_index(level=0, drop=True))
    valid = daily.dropna(subset=["soil7_mean_c"])
    newest = valid["date"].max() if len(valid) else None
    if newest is None or newest < _day(today) - pd.Timedelta(days=ta.soil_asof_max_days):
        raise SoilDataStale(f"two-axis heat model: newest complete 7-day soil mean is {newest}, older than "
                            f"{ta.soil_asof_max_days} days before {today}")
    months = valid["date"].dt.month.isin(ta.soil_months).to_numpy()
    valid = valid.assign(soil_status=np.where(months & (valid["soil7_mean_c"].to_numpy() > ta.soil_p90_c),
                                              ORANGE, GREEN), soil_asof_date=valid["date"])
    soil_points = s.drop_duplicates("soil_point_id")[["soil_point_id", "lat", "lon"]].rename(
        columns={"soil_point_id": "point_id"})
    points = heat_points.drop_duplicates("point_id")[["point_id", "lat", "lon"]].reset_index(drop=True)
    x, y = to_utm(points["lon"].to_numpy(), points["lat"].to_numpy())
    near = nearest_points(shapely.points(x, y), soil_points, ta.soil_max_distance_m)
    link = pd.DataFrame({"point_id": points["point_id"].to_numpy()[near["geom_index"]],
                         "soil_point_id": near["point_id"].to_numpy()})
    left = heat_points[["point_id", "date"]].merge(link, on="point_id", how="left")
    matched = left.dropna(subset=["soil_point_id"]).sort_values("date")
    right = valid[["soil_point_id", "date", "soil_status", "soil7_mean_c", "soil_asof_date"]].sort_values("date")
    joined = pd.merge_asof(matched, right, on="date", by="soil_point_id", direction="backward",
                           tolerance=pd.Timedelta(days=ta.soil_asof_max_days))
    return left[["point_id", "date"]].merge(
        joined[["point_id", "date", "soil_status", "soil7_mean_c", "soil_asof_date"]], on=["point_id", "date"],
        how="left")


def _two_axis(rows: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """Heat level from (heat_status, thermal tier) — risk-model §5, optional model."""
    ta = cfg.two_axis
    soil_s, air = rows["soil_status"].to_numpy(object), rows["air_tier"].to_numpy(object)
    status = np.where(soil_s == ORANGE, np.where(air == RED, RED, ORANGE),
                      np.where(soil_s == GREEN, GREEN, None)).astype(object)
    high = (rows["thermal_tier"] == ta.escalating_thermal_tier).to_numpy()
    level = np.full(len(rows), None, dtype=object)
    for st in (GREEN, ORANGE, RED):
        m = status == st
        level[m & high] = ta.level_matrix[st]["high"]
        level[m & ~high] = ta.level_matrix[st]["other"]
    return rows.assign(heat_status=status, risk_level=level,
                       escalated_by_thermal=high & np.isin(status, [ORANGE, RED]),
                       soil7_p90_c=np.where(pd.isna(status), np.nan, ta.soil_p90_c))


def _rows_for(frags: Fragments, vector: str, matches: pd.DataFrame, values: pd.DataFrame, dates: np.ndarray,
              cfg: RiskConfig) -> pd.DataFrame:
    """Fragment x date rows of one vector carrying the matched point's values (null if unmatched)."""
    idx = np.flatnonzero(in_scope(frags.frame["conductor_type"], vector, cfg))
    grid = pd.DataFrame({"geom_index": np.repeat(idx, len(dates)), "date": np.tile(dates, len(idx))})
    grid = grid.merge(matches, on=["geom_index", "date"], how="left").merge(values, on=["point_id", "date"], how="left")
    out = frags.frame.iloc[grid["geom_index"].to_numpy()].reset_index(drop=True)
    for column in grid.columns.drop("geom_index"):
        out[column] = grid[column].to_numpy()
    return out.rename(columns={"distance_m": "point_distance_m"}).assign(risk_vector=vector)


def _finish(rows: pd.DataFrame, vector: str, cfg: RiskConfig, two_axis: bool) -> pd.DataFrame:
    """Apply the vector's level rule to rows carrying the matched point values."""
    if vector == "wind":
        level, escalated = escalate_tree_strike(rows["wind_level"].to_numpy(object),
                                                rows["strike_tree_tier"].to_numpy(object), cfg.wind)
        rows = rows.assign(risk_level=level, escalated_by_tree_strike=escalated, escalated_by_thermal=False)
        for column in HEAT_VALUES:
            rows[column] = None if column in ("altitude_band", "air_tier", "forecast_model") else np.nan
    else:
        rows = rows.assign(escalated_by_tree_strike=False, risk_level=rows["heat_level"])
        rows = _two_axis(rows, cfg) if two_axis else rows.assign(escalated_by_thermal=False)
        for column in WIND_VALUES:
            rows[column] = np.nan
    for column in TWO_AXIS_VALUES:
        if column not in rows.columns:
            rows[column] = None
    rows["consecutive_heat_days"] = pd.array(rows["consecutive_heat_days"], dtype="Int64")
    rows["risk_color_hex"] = colors(rows["risk_level"].to_numpy(object), cfg)
    return _nulls_as_none(rows)


def fragment_daily(frags: Fragments, assessed_days: pd.DataFrame, dates: list[date], cfg: RiskConfig,
                   soil_days: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(fragment_risk_daily, matches)`` for ``dates``: one row per fragment, date and vector
    in scope. ``soil_days`` (from ``soil_status``) switches the heat vector to the two-axis model."""
    target_dates = pd.to_datetime(pd.Series(dates)).dt.normalize().to_numpy("datetime64[ns]")
    target = assessed_days[assessed_days["date"].isin(target_dates)]
    matches = match_by_date(frags.geoms, target[["point_id", "date", "lat", "lon"]], cfg.forecast_max_distance_m)
    values = assessed_days.drop(columns=["lat", "lon"])
    if soil_days is not None:
        values = values.merge(soil_days, on=["point_id", "date"], how="left")
    parts = [_finish(_rows_for(frags, v, matches, values, target_dates, cfg), v, cfg, soil_days is not None)
             for v in VECTORS]
    return _daily_frame(parts), matches


def _nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values of text columns as None (a merge leaves NaN): None is "not assessed"."""
    for column in frame.columns[frame.dtypes == object]:
        values = frame[column].to_numpy(object)
        missing = pd.isna(values)
        if missing.any():
            values = values.copy()
            values[missing] = None
            frame[column] = values
    return frame


def concat_rows(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Row-wise concat where a column that is all-null in one part takes the other parts' dtype
    (the vectors fill different columns; pandas would otherwise guess from the null parts)."""
    filled = [p for p in parts if len(p)] or parts[:1]
    if len(filled) > 1:
        filled = [p.copy() for p in filled]
        for column in set().union(*(p.columns for p in filled)):
            known = [p[column].dtype for p in filled if column in p.columns and p[column].notna().any()]
            if not known:
                continue
            for p in filled:
                if column in p.columns and not p[column].notna().any() and p[column].dtype != known[0]:
                    p[column] = pd.Series([None] * len(p), index=p.index, dtype=object).astype(known[0])
    return pd.concat(filled, ignore_index=True)


def _daily_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    out = concat_rows(parts)
    for column in DAILY_COLUMNS:
        if column not in out.columns:
            out[column] = None
    out = _nulls_as_none(out)
    return out[DAILY_COLUMNS].sort_values(["date", "risk_vector", "fragment_id"], kind="stable", ignore_index=True)


def fragment_windows(frags: Fragments, windows: pd.DataFrame, matches: pd.DataFrame, cfg: RiskConfig
                     ) -> pd.DataFrame:
    """Wind rows per fragment and 8-h window (§7 ``grid_risks_8h``), same matching as the days."""
    dates = np.sort(matches["date"].unique()) if len(matches) else np.array([], dtype="datetime64[ns]")
    w = windows[windows["date"].isin(dates)].assign(
        wind_level=lambda f: wind_levels(f["gust_excess"].to_numpy(float), cfg.wind))
    slots = np.arange(24 // cfg.wind.window_hours)
    idx = np.flatnonzero(in_scope(frags.frame["conductor_type"], "wind", cfg))
    grid = pd.DataFrame({"geom_index": np.repeat(idx, len(dates) * len(slots)),
                         "date": np.tile(np.repeat(dates, len(slots)), len(idx)),
                         "slot": np.tile(slots, len(idx) * len(dates))})
    grid = grid.merge(matches, on=["geom_index", "date"], how="left").merge(
        w.drop(columns=["window_complete"]), on=["point_id", "date", "slot"], how="left")
    frame = frags.frame.iloc[grid["geom_index"].to_numpy()].reset_index(drop=True)
    level, escalated = escalate_tree_strike(grid["wind_level"].to_numpy(object),
                                            frame["strike_tree_tier"].to_numpy(object), cfg.wind)
    start = pd.Series(grid["date"]) + pd.to_timedelta(grid["slot"] * cfg.wind.window_hours, unit="h")
    return frame.assign(
        date=grid["date"].to_numpy(), slot=grid["slot"].to_numpy(), window_start=start.dt.strftime("%Y-%m-%dT%H:00:00"),
        risk_vector="wind", risk_level=level, escalated_by_tree_strike=escalated,
        risk_color_hex=colors(level, cfg), point_id=grid["point_id"].to_numpy(),
        **{c: grid[c].to_numpy(float) for c in WIND_VALUES})


def nowcast_observations(hourly: pd.DataFrame, now: datetime, cfg: RiskConfig) -> pd.DataFrame:
    """Latest hour per point within the last ``nowcast_lookback_hours`` carrying both mean speed
    and gust: ``point_id, lat, lon, observed_at, wind_speed_ms, wind_gust_ms, gust_excess``."""
    now_ts = pd.Timestamp(now).tz_convert("UTC")
    recent = hourly[(hourly["ts_utc"] <= now_ts)
                    & (hourly["ts_utc"] > now_ts - pd.Timedelta(hours=cfg.nowcast_lookback_hours))
                    & hourly["wind_speed_ms"].notna() & hourly["wind_gust_ms"].notna()]
    latest = recent.sort_values(["point_id", "ts_utc"]).drop_duplicates("point_id", keep="last")
    return latest.assign(observed_at=latest["ts_utc"],
                         gust_excess=latest["wind_gust_ms"] - latest["wind_speed_ms"])[
        ["point_id", "lat", "lon", "observed_at", "wind_speed_ms", "wind_gust_ms", "gust_excess"]]


def nowcast_rows(frags: Fragments, hourly: pd.DataFrame, history_days: pd.DataFrame, now: datetime,
                 cfg: RiskConfig, local_tz: str) -> pd.DataFrame:
    """Fragment rows of the nowcast (§3): wind from the latest station reading within 10 km,
    heat from today's observed Tmax within 15 km (streak continued from the point-day history).
    ``date`` = today (local), ``observed_at`` = the observation time.

    Observations are the hourly rows at or before ``now``: a station feed in the hourly frame
    layout, or (as wired by default) the forecast API's past hours. A single reading's
    ``gust - mean`` is judged with the daily thresholds, which upstream flags as needing
    recalibration for nowcasts."""
    now_ts = pd.Timestamp(now).tz_convert("UTC")
    today = now_ts.tz_convert(local_tz).tz_localize(None).normalize()
    parts = []
    obs = nowcast_observations(hourly, now, cfg)
    wind_idx = np.flatnonzero(in_scope(frags.frame["conductor_type"], "wind", cfg))
    near = nearest_points(frags.geoms[wind_idx], obs, cfg.nowcast_wind_max_distance_m)
    if len(near):
        o = obs.set_index("point_id").loc[near["point_id"]].reset_index()
        frame = frags.frame.iloc[wind_idx[near["geom_index"].to_numpy()]].reset_index(drop=True)
        level, escalated = escalate_tree_strike(wind_levels(o["gust_excess"].to_numpy(float), cfg.wind),
                                                frame["strike_tree_tier"].to_numpy(object), cfg.wind)
        parts.append(frame.assign(risk_vector="wind", risk_level=level, escalated_by_tree_strike=escalated,
                                  gust_excess=np.round(o["gust_excess"].to_numpy(float), cfg.wind.gust_excess_decimals),
                                  wind_speed_max=o["wind_speed_ms"].to_numpy(float),
                                  wind_gusts_max=o["wind_gust_ms"].to_numpy(float),
                                  observed_at=o["observed_at"].to_numpy(), point_id=o["point_id"].to_numpy()))
    local = hourly["ts_utc"].dt.tz_convert(local_tz).dt.tz_localize(None)
    seen = hourly[(hourly["ts_utc"] <= now_ts) & (local.dt.normalize() == today) & hourly["temp_c"].notna()]
    if len(seen):
        tmax = seen.groupby("point_id").agg(lat=("lat", "first"), lon=("lon", "first"),
                                            elevation_m=("elevation_m", "first"), temp_max_c=("temp_c", "max"),
                                            observed_at=("ts_utc", "max"), forecast_model=("source", "first"))
        tmax = tmax.reset_index().assign(date=today)
        past = history_days[history_days["date"] < today]
        days = pd.concat([past[["point_id", "lat", "lon", "elevation_m", "date", "temp_max_c", "forecast_model"]],
                          tmax.drop(columns=["observed_at"])], ignore_index=True)
        days = days.assign(gust_excess=np.nan)
        assessed = assess_point_days(days, cfg)
        today_rows = assessed[assessed["date"] == today].merge(tmax[["point_id", "observed_at"]], on="point_id")
        heat_idx = np.flatnonzero(in_scope(frags.frame["conductor_type"], "heat", cfg))
        near = nearest_points(frags.geoms[heat_idx], today_rows, cfg.nowcast_heat_max_distance_m)
        if len(near):
            o = today_rows.set_index("point_id").loc[near["point_id"]].reset_index()
            frame = frags.frame.iloc[heat_idx[near["geom_index"].to_numpy()]].reset_index(drop=True)
            parts.append(frame.assign(risk_vector="heat", risk_level=o["heat_level"].to_numpy(object),
                                      escalated_by_tree_strike=False, point_id=o["point_id"].to_numpy(),
                                      observed_at=o["observed_at"].to_numpy(),
                                      **{c: o[c].to_numpy() for c in HEAT_VALUES}))
    if not parts:
        return pd.DataFrame(columns=[*IDENTITY, "date", "risk_vector", "risk_level", "observed_at"])
    rows = concat_rows(parts).assign(date=today)
    for column in (*WIND_VALUES, *HEAT_VALUES, *TWO_AXIS_VALUES, "escalated_by_thermal"):
        if column not in rows.columns:
            rows[column] = False if column == "escalated_by_thermal" else None
    rows["risk_color_hex"] = colors(rows["risk_level"].to_numpy(object), cfg)
    rows["observed_at"] = pd.to_datetime(rows["observed_at"], utc=True)
    return rows


def joint_heat_rows(joints: pd.DataFrame, assessed_days: pd.DataFrame, dates: list[date], cfg: RiskConfig,
                    soil_days: pd.DataFrame | None = None) -> pd.DataFrame:
    """Daily heat rows of cable joints (point assets with a segment id of their own).

    ``joints``: ``segment_id, joint_id, geom`` (WKB point, EPSG:32632) and optionally
    ``thermal_tier, thermal_margin_c, thermal_theta_max_c, thermal_insulation, technology,
    anno_posa, is_asphalt, m_r_critico``. Same matching and heat rules as cable fragments.
    """
    frame = joints.copy()
    for column in ("thermal_tier", "thermal_margin_c", "thermal_theta_max_c", "thermal_insulation", "technology",
                   "anno_posa", "is_asphalt", "m_r_critico"):
        if column not in frame.columns:
            frame[column] = None
    frame = frame.assign(fragment_id=frame["joint_id"].astype(str), conductor_type=cfg.heat.conductors[0],
                         strike_tree_tier=None, asset_type="joint")
    frags = Fragments(frame.drop(columns=["geom"]).reset_index(drop=True), geometries(frame), 0)
    target_dates = pd.to_datetime(pd.Series(dates)).dt.normalize().to_numpy("datetime64[ns]")
    target = assessed_days[assessed_days["date"].isin(target_dates)]
    matches = match_by_date(frags.geoms, target[["point_id", "date", "lat", "lon"]], cfg.forecast_max_distance_m)
    values = assessed_days.drop(columns=["lat", "lon"])
    if soil_days is not None:
        values = values.merge(soil_days, on=["point_id", "date"], how="left")
    rows = _rows_for(frags, "heat", matches, values, target_dates, cfg)
    return _finish(rows, "heat", cfg, soil_days is not None)


def horizon(today: date, cfg: RiskConfig) -> list[date]:
    return [today + timedelta(days=i) for i in range(cfg.horizon_days)]
