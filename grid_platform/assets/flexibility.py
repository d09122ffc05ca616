"""Flexibility assets (flexibility.md): windows, forecast, settlement data, settlement, scoring,
suggestions and the warehouse export behind the BI marts. Thin wiring of
``grid_platform.flexibility.pipeline`` (its docstring maps each asset to its function).

Partitions: ``flex_windows`` and ``flex_scoring`` by local date (Europe/Zurich) x community
(the registry's communities); the settlement data and the settlement by UTC date, all
communities in one run (settlement selects by UTC day, §4.1). The forecast, the suggestions
and the export are unpartitioned. Windows, forecast and scores are published
(``flexibility.publications``) for the read API; settlement writes the state database
through the exactly-once ledger.
"""


from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
import pandas as pd

from grid_platform.flexibility import gamification, pipeline, publications
from grid_platform.flexibility.config import load_flexibility_config
from grid_platform.flexibility.participants import local_day_bounds
from grid_platform.flexibility.suggestions import build_suggestions, suggestion_dates
from grid_platform.resources.flexibility import FlexibilityResource
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.store import flexibility as store

OWNERS = ["team:grid-data"]
GROUP = "flexibility"
SCHEMA = "flexibility"
MARKDOWN_ROWS = 20
_CONFIG = load_flexibility_config()
TZ = _CONFIG.local_timezone

# Windows of tomorrow are published today (the suggestions list covers today and tomorrow).
local_days = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone=TZ, end_offset=2)
utc_days = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")
# The demo registry is configuration (FLEX_COMMUNITY_ID): its communities are fixed per deployment.
communities = dg.StaticPartitionsDefinition([_CONFIG.community_id])
community_days = dg.MultiPartitionsDefinition({"date": local_days, "community": communities})

FLEX_WINDOWS = dg.AssetKey([SCHEMA, "flex_windows"])
COMMUNITY_FORECAST = dg.AssetKey([SCHEMA, "community_forecast"])
DEVICE_CONSUMPTION_HOURLY = dg.AssetKey([SCHEMA, "device_consumption_hourly"])
FLEX_SETTLEMENT = dg.AssetKey([SCHEMA, "flex_settlement"])
FLEX_SCORING = dg.AssetKey([SCHEMA, "flex_scoring"])
FLEX_SUGGESTIONS = dg.AssetKey([SCHEMA, "flex_suggestions"])
LEDGER_EXPORT = dg.AssetKey([SCHEMA, "settlement_ledger"])
DAILY_POINTS_EXPORT = dg.AssetKey([SCHEMA, "daily_points"])
LEADERBOARD_EXPORT = dg.AssetKey([SCHEMA, "leaderboard"])

# Unpartitioned assets below partitioned ones: plain eager() would wait for every missing partition.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def _markdown(frame: pd.DataFrame, rows: int = MARKDOWN_ROWS) -> str:
    if frame.empty:
        return "none"
    more = f"\n\n… {len(frame) - rows} more rows" if len(frame) > rows else ""
    return frame.head(rows).to_markdown(index=False) + more


def _local_clock(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, utc=True).dt.tz_convert(TZ).dt.strftime("%Y-%m-%d %H:%M")


def _community_day(context: dg.AssetExecutionContext) -> tuple[str, date]:
    keys = community_days.get_partition_key_from_str(context.partition_key).keys_by_dimension
    return keys["community"], date.fromisoformat(keys["date"])


# Windows and forecast -----------------------------------------------------------------------

def _prices(warehouse: WarehouseResource, day: date) -> pd.Series | None:
    """The day's hourly integrated prices from ``raw.ckw_prices``; None before the CKW ingestion ran."""
    if not warehouse.table_exists("ckw_prices"):
        return None
    start, end = local_day_bounds(day, TZ)
    with warehouse.connect() as con:
        prices = pipeline.integrated_prices(con, start, end)
    return prices if not prices.empty else None


@dg.asset(
    key=FLEX_WINDOWS, group_name=GROUP, owners=OWNERS, kinds={"python", "parquet"}, partitions_def=community_days,
    pool="duckdb", deps=[dg.AssetKey("ckw_prices"), COMMUNITY_FORECAST],
)
def flex_windows(context: dg.AssetExecutionContext, flexibility: FlexibilityResource,
                 warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Flexibility windows of one community and local date (§1): surplus hours of the community's net
    exchange, the cheapest third of the CKW integrated prices and the latest forecast, each community
    window enriched per device from its previous 28 days. Published (``flex_windows``) for the
    suggestions API; the window ids are deterministic, so a rerun publishes the same windows."""
    community, day = _community_day(context)
    config = flexibility.config
    prices = _prices(warehouse, day)
    forecast = publications.read_forecast(flexibility.root, community)
    rows, made_at = forecast if forecast is not None else (None, None)
    with flexibility.meter() as meter:
        windows = pipeline.windows_for_day(day, community, meter, config, prices=prices, forecast=rows,
                                           forecast_now=made_at)
    publication = publications.publish_windows(flexibility.root, community, day, windows)
    shown = windows[windows["device_id"].isna()].assign(
        start=lambda f: _local_clock(f["window_start"]), end=lambda f: _local_clock(f["window_end"]))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(windows),
        "community_windows": int(windows["device_id"].isna().sum()),
        "device_rows": int(windows["device_id"].notna().sum()),
        "by_source": dg.MetadataValue.json(windows["source"].value_counts().to_dict()),
        "prices": "none ingested for the day" if prices is None else f"{len(prices)} hours",
        "forecast_made_at": "none" if made_at is None else made_at.isoformat(),
        "publication_version": publication.version,
        "windows": dg.MetadataValue.md(_markdown(shown[["source", "start", "end", "community_kwh", "window_id"]])),
    })


@dg.asset(key=COMMUNITY_FORECAST, group_name=GROUP, owners=OWNERS, kinds={"python", "parquet"})
def community_forecast(context: dg.AssetExecutionContext, flexibility: FlexibilityResource) -> dg.MaterializeResult:
    """Net-exchange forecast of every community for the next 24 h (seasonal mean of the last 7 days
    by local hour: ``datetime, prediction, period, lower, upper``), published (``flex_forecast``).
    Its materialisations trigger the opportunity nudges (§5.3)."""
    now = datetime.now(UTC)
    config = flexibility.config
    tables = []
    with flexibility.meter() as meter:
        for community in flexibility.registry.communities(0, 1000):
            rows = pipeline.community_forecast(community, meter, now, config)
            publications.publish_forecast(flexibility.root, community, rows, now)
            tables.append(rows.assign(community_id=community))
    forecast = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    qualifying = forecast[forecast["prediction"] > 0.5] if not forecast.empty else forecast
    shown = forecast.assign(local=_local_clock(forecast["datetime"])) if not forecast.empty else forecast
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(forecast),
        "made_at": now.isoformat(),
        "communities": len(tables),
        "hours_above_threshold": len(qualifying),
        "forecast": dg.MetadataValue.md(_markdown(
            shown[["community_id", "local", "period", "prediction", "lower", "upper"]] if not shown.empty else shown,
            rows=24)),
    })


# Settlement ---------------------------------------------------------------------------------

def _utc_day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


@dg.asset(
    key=DEVICE_CONSUMPTION_HOURLY, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"},
    partitions_def=utc_days, pool="duckdb",
)
def device_consumption_hourly(context: dg.AssetExecutionContext, flexibility: FlexibilityResource,
                              warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Hourly consumption of every metered device of every community for one UTC day, from the
    meter-data service (``flexibility.device_consumption_hourly``): the settlement data. Each
    materialisation (late data included: the daily schedule re-reads the two previous days)
    triggers the settlement of that day."""
    day = _utc_day(context)
    parts = []
    with flexibility.meter() as meter:
        for community in flexibility.registry.communities(0, 1000):
            rows = pipeline.settlement_readings(community, day, meter)
            parts.append(rows.assign(community_id=community))
    readings = pd.concat(parts, ignore_index=True)[["ts", "community_id", "device_id", "consumption_kwh"]]
    readings = readings.assign(utc_date=day)
    written = warehouse.replace_rows(SCHEMA, "device_consumption_hourly", readings, {"utc_date": day})
    per_device = readings.groupby("device_id").size()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": written,
        "devices": int(per_device.size),
        "hours_per_device": dg.MetadataValue.json(per_device.value_counts().sort_index().to_dict()),
        "total_kwh": round(float(readings["consumption_kwh"].sum()), 3),
        "utc_day": day.isoformat(),
    })


def _day_readings(warehouse: WarehouseResource, day: date) -> pd.DataFrame:
    if not warehouse.table_exists("device_consumption_hourly", SCHEMA):
        return pd.DataFrame(columns=["ts", "device_id", "consumption_kwh"])
    with warehouse.connect() as con:
        return con.execute(f"select ts, device_id, consumption_kwh from {SCHEMA}.device_consumption_hourly "
                           "where utc_date = ? order by device_id, ts", [day]).df()


@dg.asset(
    key=FLEX_SETTLEMENT, group_name=GROUP, owners=OWNERS, kinds={"python", "postgresql"},
    partitions_def=utc_days, deps=[DEVICE_CONSUMPTION_HOURLY], pool="duckdb",
    check_specs=[dg.AssetCheckSpec("no_stale_commitments", asset=FLEX_SETTLEMENT,
                                   description="No committed row whose window ended more than 48 h ago.")],
)
def flex_settlement(context: dg.AssetExecutionContext, flexibility: FlexibilityResource,
                    warehouse: WarehouseResource):
    """Settlement of the commitments whose window lies fully inside the UTC day (§4.1):
    ``round(Σ consumption_kwh × 10)`` points, written exactly once through the settlement ledger
    (one commit per batch), then ``commitment_settled`` nudges. Rows without readings stay
    ``committed`` for a later run; reruns and overlapping runs settle nothing twice."""
    day = _utc_day(context)
    readings = _day_readings(warehouse, day)
    sessions = flexibility.sessions
    with flexibility.notifier() as notifier:
        report, nudged = pipeline.run_settlement(sessions, notifier, day, readings, flexibility.config,
                                                 run_id=context.run_id)
    with sessions() as session:
        settled = pd.DataFrame([(r.community_id, r.reward_points_actual, r.actual_kwh)
                                for r in store.settled_for_day(session, day)],
                               columns=["community_id", "points", "kwh"])
        stale = store.stale_committed(session, datetime.now(UTC))
    by_community = settled.groupby("community_id", as_index=False).agg(
        commitments=("points", "size"), settled_kwh=("kwh", "sum"), points=("points", "sum"))
    yield dg.MaterializeResult(metadata={
        **report.as_metadata(),
        "nudges": dg.MetadataValue.json(nudged),
        "readings": len(readings),
        "settled_for_day": dg.MetadataValue.md(_markdown(by_community.round(3))),
    })
    yield dg.AssetCheckResult(check_name="no_stale_commitments", passed=stale == 0,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"stale_committed": stale, "older_than_h": 48})


# Scoring and suggestions --------------------------------------------------------------------

@dg.asset(
    key=FLEX_SCORING, group_name=GROUP, owners=OWNERS, kinds={"python", "parquet"}, partitions_def=community_days,
    deps=[FLEX_SETTLEMENT],
)
def flex_scoring(context: dg.AssetExecutionContext, flexibility: FlexibilityResource) -> dg.MaterializeResult:
    """Daily points of one community and local date (§7: per-interval points against each device's
    30-day baseline plus the bonus of settled commitments) and the season leaderboard, published
    (``flex_scoring``); the API shows these points, never ``reward_points_actual``."""
    community, day = _community_day(context)
    config = flexibility.config
    start, end = local_day_bounds(day, TZ)
    with flexibility.meter() as meter:
        quarter = meter.community_consumption(community, day - timedelta(days=gamification.AVERAGE_DAYS), day)
        community_rows = meter.community_exchange(community, day, day, "15min")
    ts = quarter["ts"]
    previous = publications.read_scoring(flexibility.root, community)
    previous_daily = previous[0] if previous is not None else pd.DataFrame(columns=gamification.DAILY_COLUMNS)
    daily, bonus, board = pipeline.score_community_day(
        day, community, flexibility.registry, flexibility.sessions,
        consumption=quarter[(ts >= start) & (ts < end)].reset_index(drop=True),
        history=quarter[ts < start].reset_index(drop=True), community=community_rows,
        previous_daily=previous_daily, config=config)
    publication = publications.publish_scoring(flexibility.root, community, daily, board)
    today = daily[daily["day"] == day]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(today),
        "season_days": int(daily["day"].nunique()),
        "points_today": round(float(today["daily_points"].sum()), 1),
        "bonus_rows": len(bonus),
        "publication_version": publication.version,
        "leaderboard_top": dg.MetadataValue.md(_markdown(
            board.sort_values(["season_rank", "user_id"])[["season_rank", "user_id", "season_points",
                                                           "season_bonus_points"]].round(1), rows=10)),
    })


class SuggestionsConfig(dg.Config):
    as_of: str | None = None  # ISO instant the lists are computed at (default: now)


SUGGESTION_COLUMNS = ["community_id", "user_id", "device_id", "rank", "id", "period_start", "period_end",
                      "from_period", "clock_range", "to_is_tomorrow", "to_period", "to_time",
                      "impact_kwh_estimated", "reward_points", "confidence", "community_kwh", "as_of"]


def suggestion_rows(flexibility: FlexibilityResource, community: str, now: datetime) -> pd.DataFrame:
    """What ``GET /api/suggestions`` answers each member of ``community`` at ``now`` (§2)."""
    windows = publications.read_windows(flexibility.root, community, list(suggestion_dates(now, TZ)))
    rows = []
    with flexibility.sessions() as session:
        for member in flexibility.registry.all_members(community):
            committed = store.committed_suggestion_ids(session, member.recipient)
            items = build_suggestions(windows, device_id=member.device_id, committed=committed, now=now, tz=TZ)
            rows += [{"community_id": community, "user_id": member.recipient, "device_id": member.device_id,
                      "rank": rank, **item, "as_of": now} for rank, item in enumerate(items, start=1)]
    return pd.DataFrame(rows, columns=SUGGESTION_COLUMNS)


@dg.asset(
    key=FLEX_SUGGESTIONS, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"}, deps=[FLEX_WINDOWS],
    pool="duckdb", automation_condition=FOLLOW_UPSTREAM,
)
def flex_suggestions(context: dg.AssetExecutionContext, config: SuggestionsConfig, flexibility: FlexibilityResource,
                     warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Shift-consumption suggestions of every participant of the demo community for today and
    tomorrow, exactly as the suggestions API ranks them for each participant (at most 8, enriched
    windows first), in ``flexibility.suggestions``."""
    now = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC)
    if now.tzinfo is None:
        raise dg.Failure(f"as_of must carry a UTC offset, got {config.as_of!r}")
    community = flexibility.config.community_id
    rows = suggestion_rows(flexibility, community, now)
    warehouse.replace_rows(SCHEMA, "suggestions", rows.astype({"device_id": "string"}), {"community_id": community})
    first = rows.drop_duplicates("id").sort_values(["period_start", "id"])
    per_user = rows.groupby("user_id").size()
    # A metered participant's own list (enriched windows first), as the API shows it to them.
    metered = rows[rows["device_id"].notna()]
    example = rows[rows["user_id"] == (metered if not metered.empty else rows)["user_id"].min()]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "as_of": now.isoformat(),
        "community_id": community,
        "participants_with_suggestions": int(per_user.size),
        "windows_suggested": int(first["id"].nunique()) if not rows.empty else 0,
        "suggestions": dg.MetadataValue.md(_markdown(first[[
            "to_period", "clock_range", "to_is_tomorrow", "period_start", "community_kwh", "id"]])),
        "example_participant": "none" if example.empty else example["user_id"].iloc[0],
        "example_participant_suggestions": dg.MetadataValue.md(_markdown(example[[
            "rank", "clock_range", "to_period", "to_is_tomorrow", "impact_kwh_estimated", "reward_points",
            "confidence", "community_kwh"]])),
    })


# Warehouse export for BI -------------------------------------------------------------------

LEDGER_DDL = f"""create table if not exists {SCHEMA}.settlement_ledger (
    commitment_id varchar, user_id varchar, community_id varchar, device_id varchar,
    period_start timestamptz, period_end timestamptz, period_date date, settled_at timestamptz,
    reward_points_actual integer, actual_kwh double, source varchar, run_id varchar)"""
DAILY_DDL = f"""create table if not exists {SCHEMA}.daily_points (
    community_id varchar, user_id varchar, day date, base_points double, bonus_points double,
    daily_points double)"""
LEADERBOARD_DDL = f"""create table if not exists {SCHEMA}.leaderboard (
    community_id varchar, user_id varchar, season_points double, season_base_points double,
    season_bonus_points double, season_rank integer, total_members integer, season_start date,
    season_end date)"""


def _ledger_frame(flexibility: FlexibilityResource) -> pd.DataFrame:
    with flexibility.sessions() as session:
        rows = store.ledger_entries(session)
    frame = pd.DataFrame(rows, columns=["commitment_id", "user_id", "community_id", "device_id", "period_start",
                                        "period_end", "batch_id", "source", "run_id", "period_date", "settled_at",
                                        "reward_points_actual", "actual_kwh"])
    frame["commitment_id"] = frame["commitment_id"].astype(str)
    return frame.drop(columns="batch_id")


def _replace_table(con: duckdb.DuckDBPyConnection, table: str, ddl: str, frame: pd.DataFrame) -> None:
    con.execute(ddl)
    con.execute(f"delete from {SCHEMA}.{table}")
    if not frame.empty:
        con.register("incoming", frame)
        con.execute(f"insert into {SCHEMA}.{table} by name select * from incoming")
        con.unregister("incoming")


@dg.multi_asset(
    name="flexibility_warehouse_export", group_name=GROUP, pool="duckdb", can_subset=False,
    specs=[
        dg.AssetSpec(LEDGER_EXPORT, owners=OWNERS, kinds={"python", "duckdb"}, deps=[FLEX_SETTLEMENT],
                     automation_condition=FOLLOW_UPSTREAM,
                     description="The settlement ledger joined with its commitments (state database), for BI."),
        dg.AssetSpec(DAILY_POINTS_EXPORT, owners=OWNERS, kinds={"python", "duckdb"}, deps=[FLEX_SCORING],
                     automation_condition=FOLLOW_UPSTREAM,
                     description="Published daily points of every community's season, for BI."),
        dg.AssetSpec(LEADERBOARD_EXPORT, owners=OWNERS, kinds={"python", "duckdb"}, deps=[FLEX_SCORING],
                     automation_condition=FOLLOW_UPSTREAM,
                     description="Published season leaderboard of every community, for BI."),
    ],
)
def flexibility_warehouse_export(context: dg.AssetExecutionContext, flexibility: FlexibilityResource,
                                 warehouse: WarehouseResource):
    """Copies the settlement ledger (state database) and the published scores into the warehouse
    schema ``flexibility`` in one transaction, for the dbt marts (group ``flexibility_bi``)."""
    ledger = _ledger_frame(flexibility)
    daily_parts, board_parts = [], []
    for community in flexibility.registry.communities(0, 1000):
        scored = publications.read_scoring(flexibility.root, community)
        if scored is not None:
            daily_parts.append(scored[0].assign(community_id=community))
            board_parts.append(scored[1].assign(community_id=community))
    daily = pd.concat(daily_parts, ignore_index=True) if daily_parts else pd.DataFrame()
    board = pd.concat(board_parts, ignore_index=True) if board_parts else pd.DataFrame()
    with warehouse.connect() as con:
        con.execute(f"create schema if not exists {SCHEMA}")
        con.execute("begin transaction")
        _replace_table(con, "settlement_ledger", LEDGER_DDL, ledger)
        _replace_table(con, "daily_points", DAILY_DDL, daily)
        _replace_table(con, "leaderboard", LEADERBOARD_DDL, board)
        con.execute("commit")
    span = (f"{ledger['period_date'].min()} .. {ledger['period_date'].max()}" if not ledger.empty else "none")
    yield dg.MaterializeResult(asset_key=LEDGER_EXPORT, metadata={
        "dagster/row_count": len(ledger), "period_dates": span,
        "points_total": int(ledger["reward_points_actual"].sum()) if not ledger.empty else 0})
    yield dg.MaterializeResult(asset_key=DAILY_POINTS_EXPORT, metadata={"dagster/row_count": len(daily)})
    yield dg.MaterializeResult(asset_key=LEADERBOARD_EXPORT, metadata={"dagster/row_count": len(board)})


flexibility_assets = [flex_windows, community_forecast, device_consumption_hourly, flex_settlement, flex_scoring,
                      flex_suggestions, flexibility_warehouse_export]
