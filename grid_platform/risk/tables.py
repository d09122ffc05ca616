"""Risk tables behind the read API (risk-model.md §7, §8, §10, §11; grid-api.md §3.4-§3.8).

All functions are pure: frames in, frames (or JSON-ready lists) out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import numpy as np
import orjson
import pandas as pd

from grid_platform.risk.assess import concat_rows
from grid_platform.risk.config import RiskConfig
from grid_platform.risk.levels import ALERT, LEVEL_RANK, NORMAL, WARNING, day_risk_levels

RISK_COLUMNS = ["segment_id", "date", "risk_vector", "risk_level", "risk_color_hex", "metrics"]
WIND_METRICS = ["gust_excess", "wind_speed_max", "wind_gusts_max", "strike_tree_tier", "strike_tree_multiplier",
                "strike_density_per_km", "escalated_by_tree_strike"]
HEAT_METRICS = ["temp_max_c", "p90_threshold", "consecutive_heat_days", "altitude_band", "forecast_model"]
TWO_AXIS_METRICS = ["thermal_tier", "thermal_modelled", "thermal_margin_c", "thermal_theta_max_c",
                    "thermal_insulation", "heat_status", "soil_status", "soil7_mean_c", "soil7_p90_c",
                    "soil_asof_date", "air_heat_tier", "escalated_by_thermal"]
JOINT_METRICS = ["joint_id", "technology", "anno_posa", "is_asphalt", "m_r_critico"]
KM_COLUMNS = ["km_total", "km_alert", "km_warning", "km_normal", "km_escalated", "km_tree_high", "km_tree_mid",
              "km_thermal_high", "km_thermal_mid"]
RISK_KM_COMMON = ["date", "risk_vector", "level", *KM_COLUMNS, "metric_max", "worst_level", "risk_index"]
TRATTA_KEYS = ["date", "risk_vector", "dso_id", "operational_unit", "line_name", "municipality", "conductor_type"]
RISK_KM_COLUMNS = [*RISK_KM_COMMON, "dso_id", "operational_unit", "line_name", "municipality", "conductor_type",
                   "segment_id", "parent_substation_name", "feeder_id", "n_fragments", "operational_units",
                   "n_units", "n_tratte", "n_lines"]
TRENDLINE_COLUMNS = ["date", "risk_vector", "alert_count", "warning_count", "total_segments", "risk_ratio",
                     "day_risk_level"]
KM_DECIMALS = 6  # 1 mm


def _metric(rows: pd.DataFrame) -> np.ndarray:
    """The worst-first tie-breaker: gust excess for wind, Tmax for heat."""
    values = rows.reindex(columns=["gust_excess", "temp_max_c"])  # a vector-only frame lacks the other
    return np.where(rows["risk_vector"].to_numpy() == "wind", values["gust_excess"].to_numpy(float),
                    values["temp_max_c"].to_numpy(float))


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.date().isoformat() if isinstance(value, pd.Timestamp | datetime) else value.isoformat()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def metrics_json(rows: pd.DataFrame) -> np.ndarray:
    """``metrics`` text per collapsed row (keys of risk-model §7 by vector and model)."""
    two_axis = "heat_status" in rows.columns and rows["heat_status"].notna().any()
    out = np.empty(len(rows), dtype=object)
    records = rows.to_dict("records")
    for i, r in enumerate(records):
        if r["risk_vector"] == "wind":
            keys = WIND_METRICS
        else:
            keys = HEAT_METRICS + (TWO_AXIS_METRICS if two_axis else [])
        m = {k: _plain(r.get(k)) for k in keys}
        if two_axis and r["risk_vector"] == "heat":
            tier = r.get("thermal_tier")
            m["thermal_modelled"] = not pd.isna(tier) and tier != "unmodelled"
            m["air_heat_tier"] = _plain(r.get("air_tier"))
        if r.get("asset_type") == "joint":
            m["asset_type"] = "joint"
            m.update({k: _plain(r.get(k)) for k in JOINT_METRICS})
        out[i] = orjson.dumps(m).decode()
    return out


def collapse(rows: pd.DataFrame, keys: Sequence[str] = ("segment_id", "date", "risk_vector"),
             extra: Sequence[str] = ()) -> pd.DataFrame:
    """One row per ``keys`` with level ALERT/WARNING, the worst fragment kept: ALERT first, then
    the highest metric, then the smallest fragment id (deterministic). ``extra`` columns ride along."""
    r = rows[rows["risk_level"].isin([ALERT, WARNING])]
    r = r.assign(_rank=r["risk_level"].map(LEVEL_RANK).to_numpy(), _metric=_metric(r))
    r = r.sort_values([*keys, "_rank", "_metric", "fragment_id"],
                      ascending=[True] * len(keys) + [False, False, True], na_position="last", kind="stable")
    best = r.drop_duplicates(list(keys), keep="first")
    out = best[["segment_id", "date", "risk_vector", "risk_level", "risk_color_hex", *extra]].copy()
    out["metrics"] = metrics_json(best)
    order = ["date", *(["slot"] if "slot" in extra else []), "risk_vector", "risk_level", "segment_id"]
    return out[[*RISK_COLUMNS, *extra]].sort_values(order, kind="stable", ignore_index=True)


def grid_risks(daily: pd.DataFrame, joints: pd.DataFrame | None = None) -> pd.DataFrame:
    """``grid_risks``: daily collapsed rows, joints (heat) under their own segment id."""
    rows = daily if joints is None or joints.empty else concat_rows([daily, joints])
    return collapse(rows)


def grid_risks_8h(windows: pd.DataFrame, daily: pd.DataFrame, cfg: RiskConfig,
                  joints: pd.DataFrame | None = None) -> pd.DataFrame:
    """``grid_risks_8h``: wind per window; each daily heat row repeated on the date's windows."""
    slots = np.arange(24 // cfg.wind.window_hours)
    heat = daily[daily["risk_vector"] == "heat"]
    if joints is not None and not joints.empty:
        heat = concat_rows([heat, joints])
    heat = heat.loc[heat.index.repeat(len(slots))].assign(slot=np.tile(slots, len(heat)))
    heat["window_start"] = (pd.to_datetime(heat["date"]) + pd.to_timedelta(heat["slot"] * cfg.wind.window_hours, "h")
                            ).dt.strftime("%Y-%m-%dT%H:00:00")
    rows = concat_rows([windows, heat])
    return collapse(rows, ("segment_id", "date", "slot", "risk_vector"), extra=("window_start", "slot"))


def grid_risks_now(nowcast: pd.DataFrame) -> pd.DataFrame:
    """``grid_risks_now``: collapsed nowcast rows + ``observed_at``; NORMAL and null dropped."""
    if nowcast.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in [*RISK_COLUMNS, "observed_at"]})
    return collapse(nowcast, extra=("observed_at",))


def _index(km_alert: np.ndarray, km_warning: np.ndarray, km_total: np.ndarray, cfg: RiskConfig) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        index = 100.0 * (km_alert + cfg.warning_weight * km_warning) / km_total
    return np.where(km_total > 0, np.round(index, cfg.index_decimals), np.nan)


def _worst(rank: pd.Series) -> np.ndarray:
    names = {v: k for k, v in LEVEL_RANK.items()}
    return rank.map(names).to_numpy(object)


def risk_km(daily: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """``risk_km`` rows at the three levels (§10). Only assessed fragments (level not null) enter.

    Deliberate reading of "fragments that received a weather match": a matched fragment whose
    day is incomplete has no level and is left out too, so km_normal never counts unassessed km.
    """
    d = daily[daily["risk_level"].notna()]
    km = d["length_m"].to_numpy(float) / 1000.0
    level = d["risk_level"].to_numpy(object)
    wind = d["risk_vector"].to_numpy() == "wind"
    tree, thermal = d["strike_tree_tier"].to_numpy(object), d["thermal_tier"].to_numpy(object)
    escalated = np.where(wind, d["escalated_by_tree_strike"].to_numpy(bool),
                         d["escalated_by_thermal"].fillna(False).to_numpy(bool))
    parts = d[TRATTA_KEYS + ["segment_id", "parent_substation_name", "feeder_id"]].assign(
        km_total=km, km_alert=km * (level == ALERT), km_warning=km * (level == WARNING),
        km_escalated=km * escalated, km_tree_high=km * (wind & (tree == "high")),
        km_tree_mid=km * (wind & (tree == "mid")), km_thermal_high=km * (~wind & (thermal == "high")),
        km_thermal_mid=km * (~wind & (thermal == "mid")), metric=_metric(d),
        rank=d["risk_level"].map(LEVEL_RANK).to_numpy())
    sums = {c: (c, "sum") for c in KM_COLUMNS if c != "km_normal"}
    tratta = parts.groupby(TRATTA_KEYS, dropna=False, sort=True).agg(
        n_fragments=("km_total", "size"), **sums, metric_max=("metric", "max"), rank=("rank", "max"),
        segment_id=("segment_id", "first"), parent_substation_name=("parent_substation_name", "min"),
        feeder_id=("feeder_id", "min")).reset_index()
    line = tratta.groupby(["date", "risk_vector", "line_name"], dropna=False, sort=True).agg(
        **sums, metric_max=("metric_max", "max"), rank=("rank", "max"),
        operational_units=("operational_unit", lambda s: ",".join(sorted(s.dropna().astype(str).unique()))),
        n_units=("operational_unit", "nunique"), parent_substation_name=("parent_substation_name", "min"),
        n_tratte=("segment_id", "size")).reset_index()
    unit = tratta.groupby(["date", "risk_vector", "operational_unit"], dropna=False, sort=True).agg(
        **sums, metric_max=("metric_max", "max"), rank=("rank", "max"), n_tratte=("segment_id", "size"),
        n_lines=("line_name", "nunique")).reset_index()
    frames = []
    for name, frame, names in (("tratta", tratta, ["operational_unit", "line_name", "municipality", "conductor_type"]),
                               ("line", line, ["line_name"]), ("unit", unit, ["operational_unit"])):
        total, alert, warn = (frame[c].to_numpy(float) for c in ("km_total", "km_alert", "km_warning"))
        frame = frame.assign(level=name, km_normal=total - alert - warn, worst_level=_worst(frame["rank"]),
                             risk_index=_index(alert, warn, total, cfg))
        frame[KM_COLUMNS] = frame[KM_COLUMNS].round(KM_DECIMALS)
        frame = frame.sort_values(["date", "risk_vector", "risk_index", *names],
                                  ascending=[True, True, False, *[True] * len(names)], na_position="last",
                                  kind="stable")
        frames.append(frame.drop(columns=["rank"]))
    out = pd.concat(frames, ignore_index=True)
    for column in RISK_KM_COLUMNS:
        if column not in out.columns:
            out[column] = None
    for column in ("n_fragments", "n_units", "n_tratte", "n_lines"):
        out[column] = pd.array(out[column], dtype="Int64")
    return out[RISK_KM_COLUMNS]


def trendline(risks: pd.DataFrame, fragments: pd.DataFrame, dates: Sequence[date], cfg: RiskConfig) -> pd.DataFrame:
    """Daily level ratio per date and vector (§11), numerator and denominator over the same
    conductor class (so the ratio cannot exceed 1); joints are not line segments and drop out."""
    rows = []
    day_index = pd.to_datetime(pd.Series(list(dates))).dt.normalize()
    for vector in ("wind", "heat"):
        klass = fragments.loc[fragments["conductor_type"].isin(cfg.trendline_conductors[vector]), "segment_id"]
        segments = set(klass.dropna().unique())
        r = risks[(risks["risk_vector"] == vector) & risks["segment_id"].isin(segments)]
        counts = pd.crosstab(pd.to_datetime(r["date"]), r["risk_level"]).reindex(
            index=day_index, columns=[ALERT, WARNING], fill_value=0)
        total = len(segments)
        alert, warning = counts[ALERT].to_numpy(np.int64), counts[WARNING].to_numpy(np.int64)
        ratio = np.round((alert + warning) / total, cfg.ratio_decimals) if total else np.full(len(day_index), np.nan)
        rows.append(pd.DataFrame({"date": day_index.to_numpy(), "risk_vector": vector, "alert_count": alert,
                                  "warning_count": warning, "total_segments": total, "risk_ratio": ratio,
                                  "day_risk_level": day_risk_levels(ratio, cfg) if total else NORMAL}))
    return pd.concat(rows, ignore_index=True).sort_values(["date", "risk_vector"], ignore_index=True)[TRENDLINE_COLUMNS]


def trend(assessed_days: pd.DataFrame, serving_points: dict[str, set[str]], today: date, cfg: RiskConfig
          ) -> pd.DataFrame:
    """``risk_vector, date, value``: per day the maximum metric over the points serving the
    network's fragments of the vector (§8; upstream took the whole weather grid)."""
    frames = []
    for vector, column in (("wind", "gust_excess"), ("heat", "temp_max_c")):
        lo, hi = cfg.trend_days[vector]
        days = pd.date_range(pd.Timestamp(today) + pd.Timedelta(days=lo), pd.Timestamp(today) + pd.Timedelta(days=hi))
        d = assessed_days[assessed_days["point_id"].isin(serving_points.get(vector, set()))]
        value = d.groupby("date")[column].max().reindex(days)
        frames.append(pd.DataFrame({"risk_vector": vector, "date": days, "value": value.to_numpy(float)}))
    return pd.concat(frames, ignore_index=True)


def alert_distribution(daily: pd.DataFrame, vector: str, cfg: RiskConfig, *, today: date,
                       dates: Sequence[date] | None = None, operational_unit: Sequence[str] | None = None,
                       line_name: Sequence[str] | None = None, substation_name: Sequence[str] | None = None
                       ) -> list[dict]:
    """``[{risk_level, events}]`` over fragment-day rows (§8), events desc; NORMAL counted,
    null excluded; wind only over overhead conductors. No dates: the current horizon (upstream
    counted every stored day)."""
    d = daily[daily["risk_vector"] == vector]
    if vector == "wind":
        d = d[d["conductor_type"].isin(cfg.distribution_wind_conductors)]
    wanted = dates if dates is not None else [today + timedelta(days=i) for i in range(cfg.horizon_days)]
    d = d[pd.to_datetime(d["date"]).isin(pd.to_datetime(pd.Series(list(wanted))))]
    for column, values in (("operational_unit", operational_unit), ("line_name", line_name),
                           ("parent_substation_name", substation_name)):
        if values is not None:
            d = d[d[column].isin(values)]
    counts = d["risk_level"].dropna().value_counts()
    items = sorted(counts.items(), key=lambda kv: (-kv[1], -LEVEL_RANK[kv[0]]))
    return [{"risk_level": level, "events": int(n)} for level, n in items]


def grid_summary(network_id: str, trend_line: pd.DataFrame, km: pd.DataFrame, today: date, generated_at: datetime,
                 cfg: RiskConfig) -> dict:
    """GridSummary (grid-api §3.8) for today .. today + horizon - 1: trendline counts and the
    network-level km totals (sums of the unit rows, index recomputed from the sums)."""
    days = pd.date_range(pd.Timestamp(today), periods=cfg.horizon_days)
    t = trend_line[pd.to_datetime(trend_line["date"]).isin(days)]
    units = km[(km["level"] == "unit") & pd.to_datetime(km["date"]).isin(days)]
    totals = units.groupby(["date", "risk_vector"])[["km_total", "km_alert", "km_warning"]].sum()
    vectors = []
    for r in t.sort_values(["date", "risk_vector"]).itertuples(index=False):
        key = (pd.Timestamp(r.date), r.risk_vector)
        if r.total_segments == 0 and key not in totals.index:
            continue  # the network has no asset of this vector's class
        k = totals.loc[key] if key in totals.index else pd.Series({"km_total": 0.0, "km_alert": 0.0,
                                                                   "km_warning": 0.0})
        index = _index(np.array([k["km_alert"]]), np.array([k["km_warning"]]), np.array([k["km_total"]]), cfg)[0]
        vectors.append({
            "risk_vector": r.risk_vector, "date": pd.Timestamp(r.date).date().isoformat(),
            "day_risk_level": r.day_risk_level, "alert_count": int(r.alert_count),
            "warning_count": int(r.warning_count), "total_segments": int(r.total_segments),
            "risk_ratio": None if pd.isna(r.risk_ratio) else float(r.risk_ratio),
            "km_total": round(float(k["km_total"]), KM_DECIMALS), "km_alert": round(float(k["km_alert"]), KM_DECIMALS),
            "km_warning": round(float(k["km_warning"]), KM_DECIMALS),
            "risk_index": None if np.isnan(index) else float(index),
        })
    return {"network_id": network_id, "generated_at": generated_at.isoformat(),
            "dates": [d.date().isoformat() for d in days], "vectors": vectors}


def merge_refresh(history: pd.DataFrame | None, fresh: pd.DataFrame, today: date, keys: Sequence[str],
                  date_column: str = "date") -> pd.DataFrame:
    """History plus the recomputed horizon (§6): rows dated >= today come from ``fresh`` only;
    earlier rows keep the history and ``fresh`` fills only keys history lacks. Pure; the atomic
    replacement is the publication's job (``grid_platform.publish``)."""
    if history is None or history.empty:
        return fresh.reset_index(drop=True)
    cut = pd.Timestamp(today)
    h_dates = pd.to_datetime(history[date_column])
    f_dates = pd.to_datetime(fresh[date_column])
    past = history[h_dates < cut]
    fill = fresh[f_dates < cut]
    if len(fill):
        known = pd.MultiIndex.from_frame(past[list(keys)].assign(**{date_column: pd.to_datetime(past[date_column])}))
        candidate = pd.MultiIndex.from_frame(fill[list(keys)].assign(**{date_column: pd.to_datetime(fill[date_column])}))
        fill = fill[~candidate.isin(known)]
    return pd.concat([past, fill, fresh[f_dates >= cut]], ignore_index=True)
