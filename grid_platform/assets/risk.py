"""Wind and heat risk assets: hourly weather per weather point (forecast API and DWD test
reference years), P90 heat thresholds, the generated vegetation layer and every risk table of
``grid_platform.risk``, published atomically (dataset ``risk``) and written to the warehouse
schema ``risk``.

Partitioning: date (daily, Europe/Zurich) x network (the dynamic ``networks`` partitions of the
topology). Date partition D is the run with ``today = D``: its weather covers the horizon
D .. D+2 (risk-model §3) and its risk run recomputes the dates >= D (§6). Weather and risk carry a
single-run backfill policy: dagster plans a multi-partition backfill as one range per network.
Inside that run the risk tables fan out: a planning step (pool ``duckdb``) stages the inputs, steps
of ``DAYS_PER_STEP`` dates each compute their partitions in parallel and write them as Parquet
(``grid_platform.risk.partitions``, $GRID_RISK_PARTS_URL), and a final step (pool ``duckdb``)
publishes the assembled dataset and points the ``risk.*`` warehouse views at the Parquet. Each
date takes the rows of the latest issue covering it, so a backfill behind the day the
publication serves keeps the newer dates and that day's snapshot tables.
"""

import base64
import io
import os
import socket
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import fsspec
import pandas as pd
import shapely
from matplotlib.figure import Figure
from pydantic import Field

from grid_platform.assets.topology import networks
from grid_platform.networks import load_registry
from grid_platform.publish import Publication, current
from grid_platform.resources.warehouse import Slice, WarehouseResource
from grid_platform.risk.climatology import p90_tables, resolve_p90
from grid_platform.risk.config import RiskConfig, load_config
from grid_platform.risk.fragments import prepare_fragments
from grid_platform.risk.matching import grid_points
from grid_platform.risk.partitions import (
    HISTORY_DAYS,
    PART_TABLES,
    PartTable,
    assemble,
    connect,
    history_hours,
    object_store_statements,
    put_parquet,
    table_sql,
    write_partition,
)
from grid_platform.risk.pipeline import RiskRun, run_risk
from grid_platform.risk.pointdays import point_days
from grid_platform.risk.publication import publish_risk
from grid_platform.risk.vegetation import generate_trees, tree_attributes
from grid_platform.settings import load_settings
from grid_platform.weather.dwd_try import default_try_dir, load_stations, nearest_station, reference_weather
from grid_platform.weather.openmeteo import fetch_forecast
from grid_platform.weather.quality import HOURLY_COLUMNS, clean_hourly, find_implausible

TZ = "Europe/Zurich"
OWNERS = ["team:grid-data"]
GROUP = "risk"
SCHEMA = "risk"
# Weather points on a 4 km UTM grid: every fragment has a point within 2.9 km, inside the 5 km reach.
POINT_SPACING_M = 4000.0
# Geometry stays in the publication (maps, tiles); the warehouse tables serve BI.
WAREHOUSE_DROP = ("feature_geojson", "geom")
MARKDOWN_ROWS = 20
# Hourly weather rows one reference-weather run may build (about 2.5 GB of frames at the peak).
MAX_REFERENCE_ROWS = 30_000_000

risk_days = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone=TZ, end_offset=1)
risk_partitions = dg.MultiPartitionsDefinition({"date": risk_days, "network": networks})
SINGLE_RUN = dg.BackfillPolicy.single_run()

FRAGMENTS = dg.AssetKey(["topology", "fragments"])
WEATHER_FORECAST = dg.AssetKey(["risk", "weather_forecast"])
WEATHER_REFERENCE = dg.AssetKey(["risk", "weather_reference"])
HEAT_THRESHOLDS = dg.AssetKey(["risk", "heat_thresholds"])
VEGETATION = dg.AssetKey(["risk", "vegetation"])
WEATHER = dg.AssetSelection.assets(WEATHER_FORECAST, WEATHER_REFERENCE)

# Eager, except that one weather source suffices: a date has forecast or reference weather.
RISK_AUTOMATION = (
    dg.AutomationCondition.in_latest_time_window()
    & dg.AutomationCondition.any_deps_updated().since_last_handled()
    & dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing()).allow(WEATHER)
    & ~dg.AutomationCondition.any_deps_missing().ignore(WEATHER)
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("eager on either weather source")


# Shared helpers ----------------------------------------------------------------------------

def _network_dates(context: dg.AssetExecutionContext) -> dict[str, list[date]]:
    """The run's partitions per network, dates ascending (a single-run backfill is a range)."""
    out: dict[str, list[date]] = defaultdict(list)
    for key in context.partition_keys:
        parts = risk_partitions.get_partition_key_from_str(key).keys_by_dimension
        out[parts["network"]].append(date.fromisoformat(parts["date"]))
    return {network_id: sorted(days) for network_id, days in sorted(out.items())}


def _topology(network_id: str) -> Publication:
    publication = current(load_settings().published_dir, "topology", network_id)
    if publication is None:
        raise dg.Failure(f"no topology published for network {network_id!r}: materialise topology/fragments first")
    return publication


def _weather_points(fragments: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    return grid_points(prepare_fragments(fragments).geoms, POINT_SPACING_M, cfg.forecast_max_distance_m)


def _local_dates(ts_utc: pd.Series) -> pd.Series:
    return ts_utc.dt.tz_convert(TZ).dt.tz_localize(None).dt.normalize()


def _horizon_rows(hourly: pd.DataFrame, issue_dates: list[date], horizon_days: int) -> pd.DataFrame:
    """The hours of each issue date's horizon (local days D .. D + horizon - 1), tagged ``issue_date``."""
    local = _local_dates(hourly["ts_utc"])
    wanted = pd.DatetimeIndex(pd.to_datetime(issue_dates))
    parts = []
    for offset in range(horizon_days):
        issue = local - pd.Timedelta(days=offset)
        keep = issue.isin(wanted).to_numpy()
        parts.append(hourly[keep].assign(issue_date=issue[keep].dt.date.to_numpy()))
    return pd.concat(parts, ignore_index=True).sort_values(["issue_date", "point_id", "ts_utc"], ignore_index=True)


def _as_of(day: date) -> datetime:
    """The instant a run for ``day`` stands at: now for today, the day's last hour for a past day
    (the nowcast then reads that day's last hours)."""
    now = datetime.now(UTC)
    zone = ZoneInfo(TZ)
    if day >= now.astimezone(zone).date():
        return now
    return (datetime.combine(day + timedelta(days=1), time(), tzinfo=zone) - timedelta(hours=1)).astimezone(UTC)


def _markdown(frame: pd.DataFrame, rows: int = MARKDOWN_ROWS) -> str:
    if frame.empty:
        return "none"
    more = f"\n\n… {len(frame) - rows} more rows" if len(frame) > rows else ""
    return frame.head(rows).to_markdown(index=False) + more


def _date_span(frame: pd.DataFrame, column: str = "date") -> str:
    if frame.empty:
        return "none"
    values = pd.to_datetime(frame[column])
    return f"{values.min().date()} .. {values.max().date()}"


# Warehouse ---------------------------------------------------------------------------------

def _read(warehouse: WarehouseResource, sql: str, params: list) -> pd.DataFrame:
    """A query's rows, or an empty frame when the table does not exist yet."""
    with warehouse.connect() as con:
        try:
            return con.execute(sql, params).df()
        except duckdb.CatalogException:
            return pd.DataFrame()


# Weather -----------------------------------------------------------------------------------

class ReferenceWeatherConfig(dg.Config):
    try_region: int | None = Field(
        default=None, ge=1, le=15,
        description="DWD TRY region (1-15) whose reference year every weather point takes, e.g. 12 = Mannheim "
                    "for the Oberrhein networks, 7 = Kassel. Default: the network entry's `try_region`, else "
                    "the station nearest to the network.")


def _weather_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("implausible_values_excluded", asset=key, blocking=True,
                          description="The stored hours pass the plausibility rules again: every rejected value "
                                      "(isolated wind spikes such as Kassel's 66 m/s, values out of range) was "
                                      "nulled, and refilled only by interpolation inside a gap of <= 3 h."),
        dg.AssetCheckSpec("no_implausible_source_values", asset=key,
                          description="The source delivered no implausible value in the materialised range; "
                                      "otherwise (WARN) each rejected value is listed with its rule and evidence."),
    ]


@dataclass
class StoredWeather:
    """What one network's weather write stored, for metadata and checks."""

    network_id: str
    days: list[date]
    source: str
    points: int
    rows: int
    interpolated: int
    rejected: pd.DataFrame  # rejected source values with evidence
    remaining: pd.DataFrame  # stored values that still break a rule (must be none)
    without_level: pd.DataFrame  # point-days with a gap > max_gap_hours


def _store_weather(warehouse: WarehouseResource, kind: str, network_id: str, days: list[date],
                   hourly: pd.DataFrame, flags: pd.DataFrame, cfg: RiskConfig, source: str) -> StoredWeather:
    """Write the cleaned hours of the run's issue dates (risk.weather_<kind>_hourly) and the
    rejected values (risk.weather_flags) in one transaction."""
    last = days[-1] + timedelta(days=cfg.horizon_days - 1)
    local = _local_dates(hourly["ts_utc"]).dt.date
    hours = hourly[(local >= days[0]) & (local <= last)].reset_index(drop=True)
    flags = flags.assign(local_date=_local_dates(pd.to_datetime(flags["ts_utc"], utc=True)).dt.date)
    flags = flags[(flags["local_date"] >= days[0]) & (flags["local_date"] <= last)].reset_index(drop=True)
    rows = _horizon_rows(hours[HOURLY_COLUMNS], days, cfg.horizon_days)
    warehouse.replace_slices(SCHEMA, [
        Slice(f"weather_{kind}_hourly", rows, {"network_id": network_id}, "issue_date", days[0], days[-1]),
        Slice("weather_flags", flags, {"network_id": network_id, "weather_source": kind}, "local_date",
              days[0], last),
    ])
    remaining = find_implausible(hours.sort_values(["point_id", "ts_utc"], ignore_index=True), cfg.weather_quality)
    assessed = point_days(hours, cfg, TZ)
    without = assessed[~(assessed["wind_complete"] & assessed["temp_complete"])]
    local_time = flags["ts_utc"].dt.tz_convert(TZ).dt.strftime("%Y-%m-%d %H:%M")
    return StoredWeather(
        network_id=network_id, days=days, source=source, points=int(hours["point_id"].nunique()), rows=len(rows),
        interpolated=int(hours["interpolated"].sum()),
        rejected=flags.assign(network_id=network_id, local_time=local_time)[
            ["network_id", "point_id", "local_time", "variable", "value", "rule", "detail"]],
        remaining=remaining.assign(network_id=network_id),
        without_level=without[["point_id", "date", "hours_expected", "hours_missing_wind", "hours_missing_temp"]]
        .assign(network_id=network_id, date=without["date"].dt.date))


def _weather_results(key: dg.AssetKey, stored: list[StoredWeather], cfg: RiskConfig):
    """One materialisation (all networks of the run) and the two plausibility check results."""
    rejected = pd.concat([s.rejected for s in stored], ignore_index=True)
    # One line per rejected value and evidence (a reference station's value reaches every point).
    evidence = rejected.groupby(["network_id", "local_time", "variable", "value", "rule", "detail"],
                                dropna=False)["point_id"].nunique().rename("points").reset_index()
    remaining = pd.concat([s.remaining for s in stored], ignore_index=True)
    without = pd.concat([s.without_level for s in stored], ignore_index=True)
    summary = pd.DataFrame([{
        "network": s.network_id, "issue dates": f"{s.days[0]} .. {s.days[-1]} ({len(s.days)})",
        "hours to": str(s.days[-1] + timedelta(days=cfg.horizon_days - 1)), "points": s.points, "source": s.source,
        "rows": s.rows, "rejected": len(s.rejected), "interpolated": s.interpolated,
        "point-days without level": len(s.without_level)} for s in stored])
    yield dg.MaterializeResult(asset_key=key, metadata={
        "dagster/row_count": int(summary["rows"].sum()),
        "weather_source": "; ".join(s.source for s in stored),
        "per_network": dg.MetadataValue.md(summary.to_markdown(index=False)),
        "values_rejected": len(rejected),
        # A gap of more than max_gap_hours stays null: that point-day gets no level (risk-model §4-§5).
        "point_days_without_level": len(without),
        "days_without_level": dg.MetadataValue.md(_markdown(without)),
    })
    yield dg.AssetCheckResult(asset_key=key, check_name="implausible_values_excluded", passed=remaining.empty,
                              metadata={"values_rejected": len(rejected), "implausible_values_stored": len(remaining),
                                        "stored_offenders": dg.MetadataValue.md(_markdown(remaining))})
    yield dg.AssetCheckResult(asset_key=key, check_name="no_implausible_source_values", passed=rejected.empty,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"values_rejected": len(rejected),
                                        "rejected_values": dg.MetadataValue.md(_markdown(evidence))})


@dg.asset(
    key=WEATHER_FORECAST, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"},
    partitions_def=risk_partitions, backfill_policy=SINGLE_RUN, pool="duckdb",
    deps=[FRAGMENTS],
    check_specs=_weather_check_specs(WEATHER_FORECAST),
    description="Hourly wind speed, gust and temperature per weather point (4 km grid within 5 km of the "
                "network's lines) from the Open-Meteo-style forecast API ($WEATHER_API_URL). Partition D holds the "
                "horizon D .. D+2 as local days; implausible values are rejected (listed in risk.weather_flags) and "
                "gaps up to 3 h interpolated before storage in risk.weather_forecast_hourly.",
)
def weather_forecast(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    cfg = load_config()
    base_url = load_settings().weather_api_url
    stored = []
    for network_id, days in _network_dates(context).items():
        fragments = pd.read_parquet(_topology(network_id).file("fragments.parquet"))
        # Explicit UTC dates: local day D starts the evening before in UTC, D+2 ends after midnight.
        raw = fetch_forecast(base_url, _weather_points(fragments, cfg), start_date=days[0] - timedelta(days=1),
                             end_date=days[-1] + timedelta(days=cfg.horizon_days))
        hourly, flags = clean_hourly(raw, cfg.weather_quality, TZ)
        source = f"{raw['source'].iloc[0] if len(raw) else 'no rows'} ({base_url})"
        stored.append(_store_weather(warehouse, "forecast", network_id, days, hourly, flags, cfg, source))
    yield from _weather_results(WEATHER_FORECAST, stored, cfg)


def _try_region(config: ReferenceWeatherConfig, network_id: str, points: pd.DataFrame,
                stations: pd.DataFrame) -> int:
    if config.try_region is not None:
        return config.try_region
    spec = load_registry(load_settings()).get(network_id)
    if spec is not None and spec.params.get("try_region") is not None:
        return int(spec.params["try_region"])
    return int(nearest_station(stations, float(points["lat"].mean()), float(points["lon"].mean()))["region"])


@dg.asset(
    key=WEATHER_REFERENCE, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"},
    partitions_def=risk_partitions, backfill_policy=SINGLE_RUN, pool="duckdb",
    deps=[FRAGMENTS],
    check_specs=_weather_check_specs(WEATHER_REFERENCE),
    description="Hourly weather per weather point from a DWD test reference year (TRY 2010, fetched at set-up by "
                "scripts/fetch_demandlib.py) mapped onto the partition's calendar dates, gusts derived and flagged. "
                "Partition D holds the horizon D .. D+2; rejected station values and their evidence go to "
                "risk.weather_flags. Backfill a date range to replay a year of weather through the risk model.",
)
def weather_reference(context: dg.AssetExecutionContext, config: ReferenceWeatherConfig,
                      warehouse: WarehouseResource):
    cfg = load_config()
    try_dir = default_try_dir()
    stations = load_stations(try_dir)
    stored = []
    for network_id, days in _network_dates(context).items():
        points = _weather_points(pd.read_parquet(_topology(network_id).file("fragments.parquet")), cfg)
        # Each issue date stores its horizon's hours for every point: refuse a range whose rows do
        # not fit one run's memory, before building any of them.
        rows = len(points) * len(days) * cfg.horizon_days * 24
        if rows > MAX_REFERENCE_ROWS:
            raise dg.Failure(
                f"reference weather for {network_id!r}: {len(points)} weather points x {len(days)} issue dates "
                f"x {cfg.horizon_days * 24} h = {rows:,} rows, above the {MAX_REFERENCE_ROWS:,} one run holds; "
                f"backfill at most {max(1, MAX_REFERENCE_ROWS // (len(points) * cfg.horizon_days * 24))} days "
                "of this network per run")
        region = _try_region(config, network_id, points, stations)
        # The local days D .. D+2 of the run touch these calendar years (in UTC).
        years = range((days[0] - timedelta(days=1)).year, (days[-1] + timedelta(days=cfg.horizon_days)).year + 1)
        years_weather = [reference_weather(points, year, cfg.weather_quality, TZ, try_dir, region) for year in years]
        frames, flag_frames = [w[0] for w in years_weather], [w[1] for w in years_weather]
        flags = pd.concat(flag_frames, ignore_index=True)
        # The station's rejected values reach every point that takes its year.
        flags = flags.drop(columns="point_id").merge(points[["point_id"]], how="cross")[flags.columns]
        source = f"dwd_try2010 region {region:02d} ({stations.set_index('region').loc[region, 'name']})"
        stored.append(_store_weather(warehouse, "reference", network_id, days, pd.concat(frames, ignore_index=True),
                                     flags, cfg, source))
    yield from _weather_results(WEATHER_REFERENCE, stored, cfg)


# Heat thresholds and vegetation --------------------------------------------------------------

@dg.asset(
    key=HEAT_THRESHOLDS, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"}, pool="duckdb",
    automation_condition=dg.AutomationCondition.eager(),
    description="P90 daily-Tmax thresholds (°C) by altitude band and month: the configured 1981-2010 Alpine "
                "table and the one computed from the 15 DWD test reference years (risk/climatology). "
                "risk/thresholds.yaml heat.p90_source picks the one the risk tables use (column in_use).",
)
def heat_thresholds(warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = load_config()
    tables = p90_tables(cfg, default_try_dir())
    frame = pd.concat([t.assign(table_source=name, in_use=name == cfg.heat.p90_source)
                       for name, t in tables.items()], ignore_index=True)
    frame["n_stations"] = pd.to_numeric(frame["n_stations"])
    frame["n_days"] = pd.to_numeric(frame["n_days"])
    warehouse.replace_slices(SCHEMA, [Slice("heat_thresholds", frame, {})])
    pivot = frame.pivot_table(index=["table_source", "altitude_band"], columns="month", values="p90_c").reset_index()
    pivot.columns = [c if isinstance(c, str) else f"month {c}" for c in pivot.columns]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(frame),
        "in_use": cfg.heat.p90_source,
        "p90_c_by_band_and_month": dg.MetadataValue.md(pivot.to_markdown(index=False)),
    })


@dg.asset(
    key=VEGETATION, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"}, partitions_def=networks,
    pool="duckdb", deps=[FRAGMENTS], automation_condition=dg.AutomationCondition.eager(),
    description="Vegetation layer along the network's overhead lines: a reproducible GENERATED tree layer (seeded "
                "by the network id; forest stretches and scattered trees, 3-35 m) standing in for a survey, every "
                "tree marked generated = true. Feeds the tree-strike spans; it does not escalate alert levels.",
)
def vegetation(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = load_config()
    network_id = context.partition_key
    frags = prepare_fragments(pd.read_parquet(_topology(network_id).file("fragments.parquet")))
    trees = generate_trees(frags, network_id, cfg)
    attributes = tree_attributes(frags, trees, cfg)
    tiers = (attributes["strike_tree_tier"].fillna("none").value_counts().rename_axis("derived_tier")
             .reset_index(name="overhead_fragments"))
    overhead_km = float(shapely.length(frags.geoms[~frags.frame["conductor_type"].isin(
        cfg.tree_strike.excluded_conductors).to_numpy()]).sum()) / 1000
    warehouse.replace_rows(SCHEMA, "vegetation_trees", trees.assign(network_id=network_id),
                           {"network_id": network_id})
    # The layer's own row: an all-cable network has a layer without trees, which is not a missing layer.
    layer = pd.DataFrame([{"network_id": network_id, "trees": len(trees), "overhead_km": overhead_km,
                           "generated": True, "generated_at": datetime.now(UTC)}])
    warehouse.replace_rows(SCHEMA, "vegetation_layers", layer, {"network_id": network_id})
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(trees),
        "generated": True,
        "overhead_km": round(overhead_km, 2),
        "trees_per_overhead_km": round(len(trees) / overhead_km, 1) if overhead_km else None,
        "height_m_mean": round(float(trees["height_m"].mean()), 1) if len(trees) else None,
        "tiers_of_overhead_fragments": dg.MetadataValue.md(tiers.to_markdown(index=False)),
    })


def read_vegetation_trees(warehouse: WarehouseResource, network_id: str) -> pd.DataFrame:
    """The trees of a network's vegetation layer (none along an all-cable network); fails when the
    layer was never materialised."""
    if _read(warehouse, f"select 1 from {SCHEMA}.vegetation_layers where network_id = ?", [network_id]).empty:
        raise dg.Failure(f"no vegetation layer for {network_id!r}: materialise risk/vegetation first")
    return _read(warehouse, f"select * exclude (network_id) from {SCHEMA}.vegetation_trees where network_id = ?",
                 [network_id])


# Risk tables ------------------------------------------------------------------------------

# Risk tables: per-partition Parquet, computed in parallel, served through views -------------

TABLE_DESCRIPTIONS = {
    "fragment_risk_daily": "One row per fragment, date and vector with level (NORMAL included, null = not assessed), "
                           "metrics and matched weather point: the input of the wind/heat maps, bosco and the alert "
                           "distribution.",
    "grid_risks": "grid_risks: per segment, date and vector the worst ALERT/WARNING fragment with its metrics (JSON).",
    "risks_8h": "grid_risks per 8-hour window (slot 0-2): wind per window, heat repeated on each.",
    "risks_now": "Nowcast risks at the run's instant (the last 3 h of observations).",
    "risk_km": "Length-weighted exposure: km at ALERT/WARNING/NORMAL and the risk index per tratta, line and unit.",
    "trendline": "Daily level per network and vector: alert/warning segment counts, ratio and day_risk_level.",
    "trend": "Per day the maximum gust excess / Tmax over the network's weather points.",
    "tree_strike_spans": "Stretches of overhead line within reach of a tree of the vegetation layer (generated = true).",
    "weather_point_days": "Assessed weather point-days (daily wind, Tmax, completeness, heat streak): the history heat "
                          "streaks continue from.",
}
# The warehouse tables (views over the per-partition Parquet) and the asset keys risk/<name>.
RISK_TABLES = [t for t in PART_TABLES if t.view]
PUBLICATION = dg.AssetKey(["risk", "publication"])
RISK_KM = dg.AssetKey(["risk", "risk_km"])
GRID_RISKS = dg.AssetKey(["risk", "grid_risks"])
# The network-partitioned upstreams map by the network dimension (inferred by dagster).
RISK_DEPS = [FRAGMENTS, VEGETATION, WEATHER_FORECAST, WEATHER_REFERENCE, HEAT_THRESHOLDS]
# Consecutive issue dates one parallel step computes: a month is 10 steps, enough to keep a few
# workers busy, few enough that the per-step start-up stays small against the work.
DAYS_PER_STEP = 3
# A worker lost mid-step (killed, OOM) or a flaky object store: the step runs again from scratch
# (it only overwrites its own partition files).
PARTITION_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def _risk_out(key: dg.AssetKey, description: str, kinds: set[str]) -> dg.AssetOut:
    return dg.AssetOut(key=key, description=description, group_name=GROUP, owners=OWNERS, kinds=kinds,
                       dagster_type=dg.Nothing, automation_condition=RISK_AUTOMATION)


RISK_OUTS = {t.name: _risk_out(dg.AssetKey(["risk", t.name]), TABLE_DESCRIPTIONS[t.name], {"parquet", "duckdb"})
             for t in RISK_TABLES} | {
    "publication": _risk_out(PUBLICATION, "The risk dataset of the read API (docs/publications.md): every table as "
                                          "Parquet and a risk map per horizon date (maps/<date>.geojson), switched "
                                          "atomically.", {"parquet", "geojson"})}


def _risk_config(warehouse: WarehouseResource) -> RiskConfig:
    """The configuration with the P90 table ``heat.p90_source`` names (from risk/heat_thresholds)."""
    cfg = load_config()
    if cfg.heat.p90_source == "config":
        return cfg
    table = _read(warehouse, f"select * from {SCHEMA}.heat_thresholds where table_source = ?", [cfg.heat.p90_source])
    if table.empty:
        raise dg.Failure(f"heat.p90_source is {cfg.heat.p90_source!r} but risk/heat_thresholds holds no such table: "
                         "materialise risk/heat_thresholds first")
    return resolve_p90(cfg, table=table)[0]


def _stored_weather(warehouse: WarehouseResource, network_id: str, first: date, last: date) -> pd.DataFrame:
    """The stored hours of the issue dates ``first .. last`` with their ``weather_source``: the
    forecast where an issue date has one, else the reference year."""
    by_issue: dict[date, pd.DataFrame] = {}
    for kind in ("reference", "forecast"):  # forecast last: it wins
        columns = ", ".join(["issue_date", *HOURLY_COLUMNS])
        rows = _read(warehouse, f"select {columns} from {SCHEMA}.weather_{kind}_hourly where network_id = ? "
                                "and issue_date between ? and ?", [network_id, first, last])
        if rows.empty:
            continue
        rows["ts_utc"] = pd.to_datetime(rows["ts_utc"], utc=True)
        for issue, hours in rows.groupby("issue_date"):
            by_issue[pd.Timestamp(issue).date()] = hours.assign(issue_date=pd.Timestamp(issue).date(),
                                                               weather_source=kind)
    if not by_issue:
        return pd.DataFrame(columns=["issue_date", "weather_source", *HOURLY_COLUMNS])
    return pd.concat([by_issue[d] for d in sorted(by_issue)], ignore_index=True)


@dataclass(frozen=True)
class RiskChunk:
    """One parallel step: consecutive issue dates of one network and where its inputs are staged
    (Parquet every worker can read, so the step never opens the warehouse)."""

    network_id: str
    days: list[date]
    weather_url: str
    trees_url: str
    fragments_path: str
    shapes_path: str
    cfg: RiskConfig


@dataclass(frozen=True)
class ChunkResult:
    network_id: str
    days: list[date]
    sources: dict[date, str]
    written: dict[str, int]
    worker: str  # host and pid the step ran in (scale-out is visible in the run's metadata)


# The graph's upstream assets, as ordering-only inputs of the planning step.
RISK_DEP_INPUTS = {"_".join(k.path): k for k in RISK_DEPS}


@dg.op(ins={name: dg.In(dg.Nothing) for name in RISK_DEP_INPUTS}, out=dg.DynamicOut(RiskChunk), pool="duckdb",
       description="Reads the run's inputs from the warehouse (the single writer's file) once, stages them as "
                   "Parquet and fans the run's dates out into steps of a few days each.")
def risk_plan(context: dg.OpExecutionContext, warehouse: WarehouseResource):
    cfg = _risk_config(warehouse)
    root = load_settings().risk_parts_url
    for network_id, days in _network_dates(context).items():
        topology = _topology(network_id)
        trees = read_vegetation_trees(warehouse, network_id)
        trees["geom"] = [bytes(g) for g in trees["geom"]]
        weather = _stored_weather(warehouse, network_id, days[0] - timedelta(days=HISTORY_DAYS), days[-1])
        missing = [d.isoformat() for d in days if d not in set(weather["issue_date"])]
        if missing:
            raise dg.Failure(f"no weather for {network_id!r} on {', '.join(missing[:10])}"
                             f"{' …' if len(missing) > 10 else ''}: materialise risk/weather_forecast or "
                             "risk/weather_reference for these dates first")
        staging = f"{root}/_staging/{context.run_id}/{network_id}"
        put_parquet(weather, f"{staging}/weather.parquet")
        put_parquet(trees, f"{staging}/trees.parquet")
        for i in range(0, len(days), DAYS_PER_STEP):
            chunk = days[i:i + DAYS_PER_STEP]
            yield dg.DynamicOutput(
                RiskChunk(network_id, chunk, f"{staging}/weather.parquet", f"{staging}/trees.parquet",
                          str(topology.file("fragments.parquet")), str(topology.file("shapes.parquet")), cfg),
                mapping_key=f"{network_id}_{chunk[0]:%Y%m%d}")


@dg.op(retry_policy=PARTITION_RETRY,
       description="Runs the risk model for each issue date of the step and writes every table of that partition "
                   "as Parquet ($GRID_RISK_PARTS_URL). Outside the duckdb pool: steps run in parallel on as many "
                   "workers as the executor has.")
def risk_partition_runs(context: dg.OpExecutionContext, chunk: RiskChunk) -> ChunkResult:
    root = load_settings().risk_parts_url
    fragments = pd.read_parquet(chunk.fragments_path)
    shape_geoms = shapely.from_wkb(pd.read_parquet(chunk.shapes_path, columns=["geom"])["geom"])
    trees = pd.read_parquet(chunk.trees_url)
    weather = pd.read_parquet(chunk.weather_url)
    weather["ts_utc"] = pd.to_datetime(weather["ts_utc"], utc=True)
    weather["issue_date"] = pd.to_datetime(weather["issue_date"]).dt.date
    sources, written = {}, defaultdict(int)
    for day in chunk.days:
        hours = weather[weather["issue_date"] == day]
        history = history_hours(weather, day, TZ)
        previous = None
        if not history.empty:
            clean, _ = clean_hourly(history[HOURLY_COLUMNS].reset_index(drop=True), chunk.cfg.weather_quality, TZ)
            previous = {"point_days": point_days(clean, chunk.cfg, TZ)}
        run = run_risk(fragments, hours[HOURLY_COLUMNS].reset_index(drop=True), network_id=chunk.network_id,
                       today=day, now=_as_of(day), local_tz=TZ, cfg=chunk.cfg, previous=previous, trees=trees,
                       shape_geoms=shape_geoms)
        sources[day] = str(hours["weather_source"].iloc[0])
        for table, rows in write_partition(root, run, chunk.cfg.horizon_days, sources[day]).items():
            written[table] += rows
        context.log.debug(f"{chunk.network_id} {day}: {sources[day]} weather, {run.quality}")
    return ChunkResult(chunk.network_id, chunk.days, sources, dict(written), f"{socket.gethostname()}:{os.getpid()}")


@dataclass
class NetworkRun:
    network_id: str
    days: list[date]
    run: RiskRun  # the served run assembled from every stored partition of the network
    publication: Publication
    sources: dict[date, str]
    written: dict[str, int]
    behind_served_day: bool


def _levels_table(trendline: pd.DataFrame, first: date) -> str:
    """The day's level per vector, e.g. ``ALERT (0.71)``, for the run's dates and horizon."""
    rows = trendline[pd.to_datetime(trendline["date"]) >= pd.Timestamp(first)].copy()
    if rows.empty:
        return "none"
    ratio = rows["risk_ratio"].map(lambda r: "n/a" if pd.isna(r) else f"{r:.2f}")
    rows["level"] = rows["day_risk_level"].fillna("n/a") + " (" + ratio + ")"
    table = rows.pivot(index="date", columns="risk_vector", values="level").reset_index()
    table["date"] = pd.to_datetime(table["date"]).dt.date
    return _markdown(table.tail(MARKDOWN_ROWS), MARKDOWN_ROWS)


def _trendline_plot(trendline: pd.DataFrame, cfg: RiskConfig) -> str:
    """Ratio of segments at ALERT/WARNING per day and vector, with the day-level bands, as a
    markdown PNG image (Figure, not pyplot: no global state in a shared process)."""
    fig = Figure(figsize=(6.4, 2.4), dpi=80)
    ax = fig.subplots()
    for vector, rows in trendline.sort_values("date").groupby("risk_vector"):
        ax.plot(pd.to_datetime(rows["date"]), rows["risk_ratio"], marker=".", linewidth=1, label=vector)
    ax.axhline(cfg.warning_ratio_above, color="#F7D000", linewidth=0.8)
    ax.axhline(cfg.alert_ratio_above, color="#D00000", linewidth=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("risk ratio")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return f"![trendline](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def _table_metadata(outcomes: list[NetworkRun], table: PartTable) -> dict:
    frames = [getattr(o.run, table.attr) for o in outcomes]
    rows = sum(len(f) for f in frames if f is not None)
    metadata: dict = {"dagster/row_count": rows,
                      "rows_written_to_partitions": sum(o.written.get(table.name, 0) for o in outcomes)}
    if table.dated:
        metadata["dates_covered"] = "; ".join(f"{o.network_id}: {_date_span(f)}" for o, f in zip(outcomes, frames, strict=True))
    return metadata


def _run_metadata(outcomes: list[NetworkRun], cfg: RiskConfig, results: list[ChunkResult]) -> dict:
    """Run-level metadata on fragment_risk_daily: dates, weather sources, days without level, workers."""
    sources, gaps, unassessed = [], [], []
    for o in outcomes:
        for kind in sorted(set(o.sources.values())):
            used = [d for d, k in o.sources.items() if k == kind]
            sources.append(f"{o.network_id}: {kind} weather for {min(used)} .. {max(used)} ({len(used)} days)")
        last = o.days[-1] + timedelta(days=cfg.horizon_days - 1)
        days = o.run.point_days
        in_run = pd.to_datetime(days["date"]).between(pd.Timestamp(o.days[0]), pd.Timestamp(last))
        bad = days[in_run & ~(days["wind_complete"].astype(bool) & days["temp_complete"].astype(bool))]
        gaps.append(bad[["point_id", "date", "hours_missing_wind", "hours_missing_temp"]].assign(
            network_id=o.network_id, date=pd.to_datetime(bad["date"]).dt.date))
        frd = o.run.fragment_risk_daily
        none = frd[pd.to_datetime(frd["date"]).between(pd.Timestamp(o.days[0]), pd.Timestamp(last))
                   & frd["risk_level"].isna()]
        unassessed.append(none.groupby([pd.to_datetime(none["date"]).dt.date, "risk_vector"]).size()
                          .rename("fragments").reset_index().assign(network_id=o.network_id))
    gap_rows = pd.concat(gaps, ignore_index=True)
    return {
        "networks": ", ".join(o.network_id for o in outcomes),
        "run_dates": "; ".join(f"{o.network_id}: {o.days[0]} .. {o.days[-1]} ({len(o.days)})" for o in outcomes),
        "weather_sources": dg.MetadataValue.md("\n".join(f"- {s}" for s in sources)),
        "behind_served_day": any(o.behind_served_day for o in outcomes),
        # Point-days with a gap > max_gap_hours carry no level; their fragments read "not assessed".
        "point_days_without_level": len(gap_rows),
        "days_without_level": dg.MetadataValue.md(_markdown(gap_rows)),
        "fragment_days_not_assessed": dg.MetadataValue.md(_markdown(pd.concat(unassessed, ignore_index=True))),
        "p90_source": outcomes[0].run.p90_source,
        "partition_steps": len(results),
        "workers": ", ".join(sorted({r.worker for r in results})),
    }


def _view_sql(con: duckdb.DuckDBPyConnection, root: str, table: PartTable) -> str:
    """The view of ``risk.<table>``: every network's served rows, network_id first, without the
    geometry (it stays in the publication; the warehouse serves BI)."""
    columns = [r[0] for r in con.execute(f"describe {table_sql(root, table)}").fetchall()]
    keep = ["network_id"] + [c for c in columns if c not in ("network_id", *WAREHOUSE_DROP)]
    return table_sql(root, table, columns=keep)


@dg.op(pool="duckdb", out={name: dg.Out(dg.Nothing) for name in RISK_OUTS},
       description="The small single-writer step: assembles each network's served run from its partitions, "
                   "publishes it atomically and points the warehouse views risk.* at the Parquet.")
def risk_publish(context: dg.OpExecutionContext, warehouse: WarehouseResource, results: list[ChunkResult]):
    cfg = _risk_config(warehouse)
    settings = load_settings()
    root = settings.risk_parts_url
    by_network: dict[str, list[ChunkResult]] = defaultdict(list)
    for result in results:
        by_network[result.network_id].append(result)
    outcomes = []
    for network_id, parts in sorted(by_network.items()):
        days = sorted(d for p in parts for d in p.days)
        run = assemble(root, network_id, cfg)
        written: dict[str, int] = defaultdict(int)
        for p in parts:
            for table, rows in p.written.items():
                written[table] += rows
        publication = publish_risk(settings.published_dir, run, cfg)
        outcomes.append(NetworkRun(network_id, days, run, publication, {d: s for p in parts for d, s in p.sources.items()},
                                   dict(written), run.today > days[-1]))
    with connect(root) as con:
        views = {t.name: _view_sql(con, root, t) for t in RISK_TABLES}
    warehouse.replace_views(SCHEMA, views, object_store_statements(root))
    _remove_staging(root, context.run_id)
    for table in RISK_TABLES:
        metadata = _table_metadata(outcomes, table)
        if table.name == "fragment_risk_daily":
            metadata |= _run_metadata(outcomes, cfg, results)
        if table.name == "trendline":
            for o in outcomes:
                metadata[f"day_level_{o.network_id}"] = dg.MetadataValue.md(_levels_table(o.run.trendline, o.days[0]))
                if len(o.run.trendline):
                    metadata[f"trendline_plot_{o.network_id}"] = dg.MetadataValue.md(
                        _trendline_plot(o.run.trendline, cfg))
        if table.name == "risk_km":
            for o in outcomes:
                km = o.run.risk_km[(o.run.risk_km["level"] == "unit")
                                   & (pd.to_datetime(o.run.risk_km["date"]) >= pd.Timestamp(o.days[0]))]
                metadata[f"km_alert_{o.network_id}"] = round(float(km["km_alert"].sum()), 3)
                metadata[f"km_warning_{o.network_id}"] = round(float(km["km_warning"].sum()), 3)
        yield dg.Output(None, table.name, metadata=metadata)
    yield dg.Output(None, "publication", metadata={
        "versions": "; ".join(f"{o.network_id}: {o.publication.version}" for o in outcomes),
        "content_hashes": "; ".join(f"{o.network_id}: {o.publication.content_hash}" for o in outcomes),
        "path": dg.MetadataValue.path(str(outcomes[-1].publication.path)),
        "maps": sum(k.startswith("maps/") for o in outcomes for k in o.publication.files),
        "served_today": "; ".join(f"{o.network_id}: {o.run.today}" for o in outcomes),
        "partitions_url": root,
    })


def _remove_staging(root: str, run_id: str) -> None:
    fs, path = fsspec.core.url_to_fs(f"{root}/_staging/{run_id}")
    if fs.exists(path):
        fs.rm(path, recursive=True)


@dg.graph_multi_asset(outs=RISK_OUTS, ins={name: dg.AssetIn(key=k, dagster_type=dg.Nothing)
                                           for name, k in RISK_DEP_INPUTS.items()},
                      partitions_def=risk_partitions, backfill_policy=SINGLE_RUN, can_subset=False, group_name=GROUP)
def risk_tables(**upstream):
    """Risk model per (date, network) partition: a small planning step in pool ``duckdb`` stages the
    inputs, parallel steps (DAYS_PER_STEP dates each) write per-partition Parquet outside the pool,
    and one final step in pool ``duckdb`` publishes the dataset and the warehouse views."""
    chunks = risk_plan(**upstream)
    return risk_publish(chunks.map(risk_partition_runs).collect())


# Checks over the whole warehouse ------------------------------------------------------------

@dg.asset_check(asset=RISK_KM, pool="duckdb",
                description="risk-model §13 over every stored row: km at alert + warning + normal = total, "
                            "risk index within [0, 100], and the rollup index recomputed from the km sums.")
def risk_km_consistent(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    cfg = load_config()
    rows = _read(warehouse, f"""
        select level, count(*) as rows,
               count(*) filter (where abs(km_alert + km_warning + km_normal - km_total) > 1e-6) as parts_not_total,
               count(*) filter (where risk_index < 0 or risk_index > 100) as index_out_of_range,
               count(*) filter (where km_total > 0 and abs(risk_index - round(100 * (km_alert + ? * km_warning)
                                / km_total, ?)) > 0.011) as index_not_from_sums
        from {SCHEMA}.risk_km group by level order by level""", [cfg.warning_weight, cfg.index_decimals])
    if rows.empty:
        return dg.AssetCheckResult(passed=False, metadata={"reason": f"{SCHEMA}.risk_km does not exist yet"})
    bad = int(rows[["parts_not_total", "index_out_of_range", "index_not_from_sums"]].to_numpy().sum())
    return dg.AssetCheckResult(passed=bad == 0, metadata={
        "rows_checked": int(rows["rows"].sum()), "by_level": dg.MetadataValue.md(rows.to_markdown(index=False))})


@dg.asset_check(asset=GRID_RISKS, pool="duckdb",
                description="Every segment_id of the served horizon in risk.grid_risks is a shape of its network "
                            "in topology.segments (segment ids equal across shapes and risks, risk-model §13). "
                            "Older dates may name segments a later topology build retired.")
def grid_risks_segments_in_topology(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    rows = _read(warehouse, f"""
        with served as (
            select network_id, max(date) - ? as first_date from {SCHEMA}.trendline group by network_id)
        select r.network_id, count(*) as risk_rows, count(*) filter (where s.segment_id is null) as unknown_segments
        from {SCHEMA}.grid_risks r
        join served using (network_id)
        left join (select distinct network_id, segment_id from topology.segments) s
          on s.network_id = r.network_id and s.segment_id = r.segment_id
        where r.date >= served.first_date
        group by r.network_id order by r.network_id""", [load_config().horizon_days - 1])
    if rows.empty:
        return dg.AssetCheckResult(passed=True, metadata={"risk_rows": 0})
    return dg.AssetCheckResult(passed=int(rows["unknown_segments"].sum()) == 0,
                               metadata={"by_network": dg.MetadataValue.md(rows.to_markdown(index=False))})


risk_assets = [weather_forecast, weather_reference, heat_thresholds, vegetation, risk_tables]
risk_checks = [risk_km_consistent, grid_risks_segments_in_topology]
