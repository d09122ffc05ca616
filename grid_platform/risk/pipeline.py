"""One risk run for one network: weather + fragments (+ history) -> every risk table.

``run_risk`` is the pure entry point the Dagster assets wrap: it cleans the hourly weather,
aggregates windows and days, continues the point-day history (heat streaks need the days
before the horizon), assesses fragments for the horizon (today .. today + 2), collapses the
tables, and merges them into the previous run's history (§6 refresh: dates >= today are
recomputed, earlier dates kept). Publication is a separate step (``publication.publish_risk``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from grid_platform.risk.assess import (
    assess_point_days,
    fragment_daily,
    fragment_windows,
    horizon,
    in_scope,
    joint_heat_rows,
    nowcast_rows,
    soil_status,
)
from grid_platform.risk.climatology import resolve_p90
from grid_platform.risk.config import RiskConfig, load_config
from grid_platform.risk.fragments import Fragments, prepare_fragments
from grid_platform.risk.pointdays import point_days, point_windows
from grid_platform.risk.tables import (
    grid_risks,
    grid_risks_8h,
    grid_risks_now,
    grid_summary,
    merge_refresh,
    risk_km,
    trend,
    trendline,
)
from grid_platform.risk.vegetation import tree_attributes, tree_strike_spans, with_tree_attributes
from grid_platform.weather.quality import clean_hourly

# Keys per table for the refresh merge (rows dated >= today always come from the new run).
REFRESH_KEYS = {
    "point_days": ["point_id", "date"],
    "fragment_risk_daily": ["fragment_id", "date", "risk_vector"],
    "risks": ["segment_id", "date", "risk_vector"],
    "risks_8h": ["segment_id", "date", "slot", "risk_vector"],
    "risk_km": ["level", "date", "risk_vector", "operational_unit", "line_name", "municipality", "conductor_type"],
    "trendline": ["date", "risk_vector"],
}


@dataclass
class RiskRun:
    network_id: str
    today: date
    generated_at: datetime
    p90_source: str
    point_days: pd.DataFrame  # assessed weather point-days, history + horizon
    weather_flags: pd.DataFrame  # rejected hourly values of this run's weather
    fragment_risk_daily: pd.DataFrame
    risks: pd.DataFrame
    risks_8h: pd.DataFrame
    risks_now: pd.DataFrame
    risk_km: pd.DataFrame
    trendline: pd.DataFrame
    trend: pd.DataFrame
    tree_strike_spans: pd.DataFrame | None
    summary: dict
    quality: dict = field(default_factory=dict)  # data-quality counters for checks and the manifest

    def history_tables(self) -> dict[str, pd.DataFrame]:
        """The tables the next run continues (``run_risk(previous=...)``)."""
        return {name: getattr(self, name) for name in REFRESH_KEYS}

    @property
    def horizon(self) -> list[date]:
        days = pd.to_datetime(self.fragment_risk_daily["date"]).dt.normalize().unique()
        return sorted(d.date() for d in days if d.date() >= self.today)


def _serving_points(frags: Fragments, matches: pd.DataFrame, cfg: RiskConfig) -> dict[str, set[str]]:
    out = {}
    for vector in ("wind", "heat"):
        scope = in_scope(frags.frame["conductor_type"], vector, cfg)
        out[vector] = set(matches.loc[scope[matches["geom_index"].to_numpy()], "point_id"])
    return out


def run_risk(
    fragments: pd.DataFrame,
    hourly: pd.DataFrame,
    *,
    network_id: str,
    today: date,
    now: datetime | None = None,
    local_tz: str = "Europe/Zurich",
    cfg: RiskConfig | None = None,
    previous: Mapping[str, pd.DataFrame] | None = None,
    soil: pd.DataFrame | None = None,
    joints: pd.DataFrame | None = None,
    trees: pd.DataFrame | None = None,
    trees_set_tiers: bool = False,
    shape_geoms: np.ndarray | None = None,
) -> RiskRun:
    """Compute every risk table of one network for the horizon starting ``today`` (local date).

    ``hourly``: weather rows (``weather.quality.HOURLY_COLUMNS``), cleaned here. ``previous``:
    the last run's history tables (``RiskRun.history_tables()`` or
    ``publication.load_previous``), continued here. ``soil`` switches on the two-axis heat model.
    ``trees`` adds tree-strike spans; with ``trees_set_tiers`` fragments lacking tree-strike
    inputs take tiers derived from those trees (off by default: a generated layer must not
    escalate alerts unless asked). The P90 table is the one ``heat.p90_source`` asks for
    (``climatology.resolve_p90``, computed once here when the config does not carry it yet).
    """
    cfg = cfg or load_config()
    if cfg.heat.p90_table_source != cfg.heat.p90_source:
        cfg, _ = resolve_p90(cfg)
    now = now or datetime.now(UTC)
    clean, flags = clean_hourly(hourly, cfg.weather_quality, local_tz)
    windows = point_windows(clean, cfg, local_tz)
    days = point_days(clean, cfg, local_tz, windows)
    previous = previous or {}
    history = previous.get("point_days")
    history = None if history is None else history[days.columns.tolist()]
    days = merge_refresh(history, days, today, REFRESH_KEYS["point_days"])
    assessed = assess_point_days(days, cfg)

    frags = prepare_fragments(fragments)
    if trees is not None and trees_set_tiers:
        frags = with_tree_attributes(frags, tree_attributes(frags, trees, cfg))
    dates = horizon(today, cfg)
    soil_days = None
    if soil is not None:
        heat_points = assessed[["point_id", "lat", "lon", "date"]]
        soil_days = soil_status(heat_points, soil, cfg, today)
    daily, matches = fragment_daily(frags, assessed, dates, cfg, soil_days)
    window_rows = fragment_windows(frags, windows, matches, cfg)
    joint_rows = None if joints is None or joints.empty else joint_heat_rows(joints, assessed, dates, cfg, soil_days)
    now_rows = nowcast_rows(frags, clean, assessed, now, cfg, local_tz)

    risks = grid_risks(daily, joint_rows)
    km = risk_km(daily, cfg)
    line = trendline(risks, frags.frame, dates, cfg)

    def merged(name: str, fresh: pd.DataFrame) -> pd.DataFrame:
        return merge_refresh(previous.get(name), fresh, today, REFRESH_KEYS[name])

    daily_all = merged("fragment_risk_daily", daily)
    km_all = merged("risk_km", km)
    line_all = merged("trendline", line)
    spans = None if trees is None else tree_strike_spans(frags, trees, cfg, shape_geoms)
    generated_at = now if now.tzinfo else now.replace(tzinfo=UTC)
    return RiskRun(
        network_id=network_id, today=today, generated_at=generated_at, p90_source=cfg.heat.p90_table_source,
        point_days=assessed, weather_flags=flags, fragment_risk_daily=daily_all,
        risks=merged("risks", risks), risks_8h=merged("risks_8h", grid_risks_8h(window_rows, daily, cfg, joint_rows)),
        risks_now=grid_risks_now(now_rows), risk_km=km_all, trendline=line_all,
        trend=trend(assessed, _serving_points(frags, matches, cfg), today, cfg), tree_strike_spans=spans,
        summary=grid_summary(network_id, line_all, km_all, today, generated_at, cfg),
        quality={
            "fragments_excluded_null_key": frags.excluded_null_key,
            "weather_values_rejected": len(flags),
            "weather_point_days_incomplete": int((~(days["wind_complete"] & days["temp_complete"]))
                                                 [pd.to_datetime(days["date"]).isin(pd.to_datetime(dates))].sum()),
            "fragment_days_not_assessed": int(daily["risk_level"].isna().sum()),
            "two_axis_heat_model": soil is not None,
            "p90_source": cfg.heat.p90_table_source,
        },
    )
