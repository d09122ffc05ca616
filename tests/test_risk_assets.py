"""Risk assets over the real oberrhein_mv network and the real DWD test reference years: the
topology is materialised, a week of reference weather and its risk tables is backfilled through
dagster's backfill machinery (one run for the range), the tables land in the warehouse and the
publication, a backfill behind the served day keeps the newer dates, Kassel's 66 m/s spike is
flagged and excluded, the forecast path runs against the weather stand-in, the risk tables follow
a new forecast by their automation condition, and the dbt marts answer "which lines had the most
alert km last month"."""

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.backfill import execute_backfill_iteration

from grid_platform.assets.risk import (
    FRAGMENTS,
    PUBLICATION,
    RISK_TABLES,
    WEATHER_FORECAST,
    WEATHER_REFERENCE,
    _store_weather,
    _weather_results,
    grid_risks_segments_in_topology,
    heat_thresholds,
    risk_assets,
    risk_checks,
    risk_km_consistent,
    risk_tables,
    vegetation,
    weather_forecast,
    weather_reference,
)
from grid_platform.assets.topology import grid_topology, networks
from grid_platform.publish import current
from grid_platform.resources.warehouse import Slice, WarehouseResource
from grid_platform.risk.config import load_config
from grid_platform.sensors.risk import risk_forecast_hourly, risk_jobs, risk_schedules, risk_sensors
from grid_platform.settings import PROJECT_ROOT, load_settings
from grid_platform.standins.server import running
from grid_platform.standins.weather import create_app
from grid_platform.weather.dwd_try import TRY_DIR_NAME, reference_weather, try_files
from grid_platform.weather.quality import clean_hourly

NETWORK = "oberrhein_mv"
ZURICH = ZoneInfo("Europe/Zurich")
# Mannheim (TRY 12, the Oberrhein climate region) is hot from 13 to 18 July of its reference year.
FIRST, LAST = date(2025, 7, 12), date(2025, 7, 18)
RANGE_TAGS = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
DBT = Path(sys.executable).with_name("dbt")
TABLE_KEYS = [dg.AssetKey(["risk", t.name]) for t in RISK_TABLES] + [PUBLICATION]


def key(day: date, network_id: str = NETWORK) -> str:
    return dg.MultiPartitionKey({"date": day.isoformat(), "network": network_id})


def range_tags(first: date, last: date) -> dict[str, str]:
    return {RANGE_TAGS[0]: key(first), RANGE_TAGS[1]: key(last)}


# The code location the backfill daemon loads (this file): paths come from the environment the
# fixture sets, so the in-process runs write where the test reads.
defs = dg.Definitions(
    assets=[grid_topology, *risk_assets], asset_checks=risk_checks, jobs=risk_jobs, schedules=risk_schedules,
    sensors=risk_sensors, executor=dg.in_process_executor,
    resources={"warehouse": WarehouseResource(path=dg.EnvVar("GRID_WAREHOUSE"),
                                              pipelines_dir=dg.EnvVar("GRID_RISK_TEST_DLT_DIR"))},
)


@dataclass
class Platform:
    root: Path
    instance: dg.DagsterInstance
    warehouse: WarehouseResource
    try_dir: Path

    @property
    def published(self) -> Path:
        return load_settings().published_dir

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(self.warehouse.path, read_only=True) as con:
            return con.execute(sql, params or []).fetchall()


def _try_dir() -> Path:
    """The TRY files from scripts/fetch_demandlib.py (run once into the project's data dir if absent)."""
    candidates = [load_settings().downloads_dir / TRY_DIR_NAME, PROJECT_ROOT / "data" / "downloads" / TRY_DIR_NAME]
    for candidate in candidates:
        if len(try_files(candidate)) == 15:
            return candidate
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "fetch_demandlib.py")], capture_output=True,
                          text=True, env={**os.environ, "GRID_DATA_DIR": str(PROJECT_ROOT / "data")}, timeout=300,
                          check=False)
    if done.returncode != 0 or len(try_files(candidates[1])) != 15:
        pytest.skip(f"DWD TRY files unavailable and the download failed: {done.stderr.strip()[-300:]}")
    return candidates[1]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """Topology, vegetation and heat thresholds of oberrhein_mv in a persistent test instance."""
    root = tmp_path_factory.mktemp("risk_assets")
    try_dir = _try_dir()
    patch = pytest.MonkeyPatch()
    patch.setenv("GRID_DATA_DIR", str(root / "data"))
    patch.setenv("GRID_WAREHOUSE", str(root / "warehouse.duckdb"))
    patch.setenv("GRID_RISK_TEST_DLT_DIR", str(root / "dlt"))
    patch.setenv("GRID_TRY_DIR", str(try_dir))
    (root / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster"), synchronous_run_launcher=True,
                              synchronous_run_coordinator=True) as instance:
        instance.add_dynamic_partitions(networks.name, [NETWORK])
        warehouse = WarehouseResource(path=str(root / "warehouse.duckdb"), pipelines_dir=str(root / "dlt"))
        resources = {"warehouse": warehouse}
        assert dg.materialize([grid_topology], partition_key=NETWORK, instance=instance, resources=resources).success
        assert dg.materialize([vegetation], partition_key=NETWORK, instance=instance, resources=resources).success
        assert dg.materialize([heat_thresholds], instance=instance, resources=resources).success
        yield Platform(root, instance, warehouse, try_dir)
    patch.undo()


@pytest.fixture(scope="module")
def backfilled(platform):
    """Reference weather and risk tables for FIRST .. LAST, launched as an asset backfill and run
    by the backfill daemon's iteration; returns the runs it made."""
    instance = platform.instance
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="reference-week", asset_graph=defs.resolve_asset_graph(),
        partition_names=[key(FIRST + timedelta(days=i)) for i in range((LAST - FIRST).days + 1)],
        asset_selection=[WEATHER_REFERENCE, *TABLE_KEYS], backfill_timestamp=time.time(), tags={},
        dynamic_partitions_store=instance, all_partitions=False, title="a week of reference weather",
        description=None, run_config=None)
    instance.add_backfill(backfill)
    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__, attribute="defs",
                                                              working_directory=str(PROJECT_ROOT)),
                                         location_name="risk_test")
    with WorkspaceProcessContext(instance, InProcessTestWorkspaceLoadTarget(origin)) as workspace:
        for _ in range(10):
            list(execute_backfill_iteration(workspace, logging.getLogger("risk_backfill")))
            if instance.get_backfill("reference-week").status != BulkActionStatus.REQUESTED:
                break
    status = instance.get_backfill("reference-week").status
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": "reference-week"}))
    assert status == BulkActionStatus.COMPLETED_SUCCESS, [(r.run_id, r.status) for r in runs]
    return runs


def _latest_metadata(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(asset_key)
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_definitions_hold_together():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for asset_key in graph.get_all_asset_keys():
        node = graph.get(asset_key)
        if asset_key.path[0] == "risk":
            assert node.group_name == "risk" and node.kinds and node.owners and node.description, asset_key
    # Every warehouse writer holds the duckdb pool; the heavy per-partition steps of the risk tables
    # write Parquet only and run outside it, in parallel.
    for assets_def in risk_assets:
        if assets_def is risk_tables:
            pools = {op.name: op.pool for op in risk_tables.node_def.node_defs}
            assert pools == {"risk_plan": "duckdb", "risk_partition_runs": None, "risk_publish": "duckdb"}
        else:
            assert assets_def.op.pool == "duckdb"
    # The network-partitioned topology maps onto the network dimension of the date x network partitions.
    mapping = graph.get_partition_mapping(dg.AssetKey(["risk", "grid_risks"]), FRAGMENTS)
    assert isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping)
    assert risk_tables.backfill_policy == weather_reference.backfill_policy == dg.BackfillPolicy.single_run()
    schedule = risk_forecast_hourly
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.execution_timezone == "Europe/Zurich"


def test_forecast_schedule_asks_today_for_every_network():
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance,
                                            scheduled_execution_time=datetime(2026, 3, 29, 6, 0, tzinfo=ZURICH))
        assert isinstance(risk_forecast_hourly(context), dg.SkipReason)
        instance.add_dynamic_partitions(networks.name, ["b_net", NETWORK])
        requests = risk_forecast_hourly(context)
    assert [r.partition_key for r in requests] == [key(date(2026, 3, 29), "b_net"), key(date(2026, 3, 29))]
    assert len({r.run_key for r in requests}) == 2


def test_replacing_slices_is_one_transaction(tmp_path):
    warehouse = WarehouseResource(path=str(tmp_path / "w.duckdb"), pipelines_dir=str(tmp_path))
    week = pd.DataFrame({"date": [date(2025, 7, 1), date(2025, 7, 2)], "level": ["ALERT", None]})
    warehouse.replace_slices("risk", [Slice("t_days", week, {"network_id": "n1"}, "date", date(2025, 7, 1))])
    # A later run replaces its own dates onwards only; a new column is added, text stays text.
    warehouse.replace_slices("risk", [Slice("t_days", week.iloc[1:].assign(level="WARNING", km=1.5),
                                            {"network_id": "n1"}, "date", date(2025, 7, 2))])
    with pytest.raises(FileNotFoundError):  # the second slice fails: the first one is rolled back
        warehouse.replace_slices("risk", [
            Slice("t_days", week.iloc[:0], {"network_id": "n1"}, "date", date(2025, 7, 1)),
            Slice("t_other", tmp_path / "missing.parquet", {"network_id": "n1"})])
    with duckdb.connect(warehouse.path, read_only=True) as con:
        assert con.execute("select date, level, km from risk.t_days order by date").fetchall() == [
            (date(2025, 7, 1), "ALERT", None), (date(2025, 7, 2), "WARNING", 1.5)]


def test_a_gap_longer_than_3_hours_leaves_the_day_without_level(tmp_path):
    """5 missing hours stay missing and the point-day is reported; 2 missing hours are interpolated."""
    cfg = load_config()
    points = pd.DataFrame({"point_id": ["p1", "p2"], "lat": [48.40, 48.45], "lon": [7.80, 7.85]})
    hourly, flags = reference_weather(points, 2025, cfg.weather_quality, "Europe/Zurich", _try_dir(), region=12)
    ts = hourly["ts_utc"]
    start = pd.Timestamp("2025-07-15 06:00", tz="UTC")
    long_gap = (hourly["point_id"] == "p1") & (ts >= start) & (ts < start + pd.Timedelta(hours=5))
    short_gap = (hourly["point_id"] == "p2") & (ts >= start) & (ts < start + pd.Timedelta(hours=2))
    hourly.loc[long_gap | short_gap, ["wind_speed_ms", "wind_gust_ms"]] = None
    hourly, _ = clean_hourly(hourly, cfg.weather_quality, "Europe/Zurich")
    warehouse = WarehouseResource(path=str(tmp_path / "w.duckdb"), pipelines_dir=str(tmp_path))
    stored = _store_weather(warehouse, "forecast", "n1", [date(2025, 7, 14)], hourly, flags, cfg, "test")
    assert stored.without_level[["point_id", "date", "hours_missing_wind"]].values.tolist() == [
        ["p1", date(2025, 7, 15), 5]]
    materialization, excluded, flagged = _weather_results(WEATHER_FORECAST, [stored], cfg)
    assert materialization.metadata["point_days_without_level"] == 1
    assert "| p1 " in materialization.metadata["days_without_level"].value
    assert excluded.passed and flagged.passed


@pytest.mark.slow
def test_a_range_backfill_is_one_run(backfilled):
    assert len(backfilled) == 1
    run = backfilled[0]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert (run.tags[RANGE_TAGS[0]], run.tags[RANGE_TAGS[1]]) == (key(FIRST), key(LAST))


@pytest.mark.slow
def test_tables_land_in_warehouse_and_publication(platform, backfilled):
    publication = current(platform.published, "risk", NETWORK)
    names = set(publication.files)
    assert {"risks.parquet", "risks_8h.parquet", "risks_now.parquet", "fragment_risk_daily.parquet",
            "risk_km.parquet", "trendline.parquet", "trend.parquet", "tree_strike_spans.parquet"} <= names
    # The last run day is "today": its horizon gets maps.
    assert {n for n in names if n.startswith("maps/")} == {f"maps/2025-07-{d}.geojson" for d in (18, 19, 20)}
    manifest = json.loads(publication.file("manifest.json").read_text())
    assert manifest["extra"]["today"] == LAST.isoformat()

    daily = pd.read_parquet(publication.file("fragment_risk_daily.parquet"))
    assert (daily["date"].min(), daily["date"].max()) == (FIRST, LAST + timedelta(days=2))
    heat = daily[daily["risk_vector"] == "heat"].groupby("date")["risk_level"].agg(lambda s: set(s.dropna()))
    # 13 July starts the heat streak: WARNING on its 1st and 2nd day, ALERT from the 3rd.
    assert heat[date(2025, 7, 12)] == {"NORMAL"}
    assert heat[date(2025, 7, 13)] == heat[date(2025, 7, 14)] == {"WARNING"}
    assert heat[date(2025, 7, 15)] == {"ALERT"}

    for table, stem in (("fragment_risk_daily", "fragment_risk_daily"), ("grid_risks", "risks"),
                        ("risk_km", "risk_km"), ("trendline", "trendline"), ("risks_8h", "risks_8h")):
        published = len(pd.read_parquet(publication.file(f"{stem}.parquet")))
        stored = platform.query(f"select count(*) from risk.{table} where network_id = ?", [NETWORK])[0][0]
        assert stored == published > 0, table
    spans = platform.query("select count(*), bool_and(generated) from risk.tree_strike_spans")[0]
    assert spans[0] > 0 and spans[1] is True
    # Every stored weather hour of the week comes from the Mannheim reference year.
    sources = platform.query("select distinct source from risk.weather_reference_hourly where network_id = ?",
                             [NETWORK])
    assert sources == [("dwd_try2010:12",)]

    levels = _latest_metadata(platform.instance, dg.AssetKey(["risk", "trendline"]))
    assert "| 2025-07-15 | ALERT (1.00)" in levels[f"day_level_{NETWORK}"]
    assert levels[f"trendline_plot_{NETWORK}"].startswith("![trendline](data:image/png;base64,")
    daily_meta = _latest_metadata(platform.instance, dg.AssetKey(["risk", "fragment_risk_daily"]))
    assert daily_meta["point_days_without_level"] == 0
    assert "reference weather for 2025-07-12 .. 2025-07-18 (7 days)" in daily_meta["weather_sources"]

    assert platform.query("select table_source, count(*), bool_or(in_use) from risk.heat_thresholds "
                          "group by 1 order by 1") == [("config", 15, True), ("dwd_try2010", 15, False)]
    assert platform.query("select count(*) > 0, bool_and(generated) from risk.vegetation_trees") == [(True, True)]
    assert risk_km_consistent(warehouse=platform.warehouse).passed
    assert grid_risks_segments_in_topology(warehouse=platform.warehouse).passed


@pytest.mark.slow
def test_backfill_behind_the_served_day_keeps_newer_dates(platform, backfilled):
    served = json.loads(current(platform.published, "risk", NETWORK).file("manifest.json").read_text())["extra"]
    before = platform.query("select date, segment_id, risk_vector, risk_level, metrics from risk.grid_risks "
                            "where date >= ? order by all", [FIRST])
    result = dg.materialize([weather_reference, risk_tables], instance=platform.instance,
                            resources={"warehouse": platform.warehouse},
                            tags=range_tags(date(2025, 7, 10), date(2025, 7, 11)))
    assert result.success
    manifest = json.loads(current(platform.published, "risk", NETWORK).file("manifest.json").read_text())
    assert manifest["extra"]["today"] == served["today"] and manifest["extra"]["summary"] == served["summary"]
    first, last = platform.query("select min(date), max(date) from risk.fragment_risk_daily")[0]
    assert first == date(2025, 7, 10) and last >= LAST + timedelta(days=2)
    after = platform.query("select date, segment_id, risk_vector, risk_level, metrics from risk.grid_risks "
                           "where date >= ? order by all", [FIRST])
    assert after == before


@pytest.mark.slow
def test_kassel_spike_is_flagged_and_excluded(platform):
    """Kassel (TRY 07) as the network's station: its 66 m/s hour on 4 January is rejected with its
    evidence, replaced by interpolation from the 4 m/s neighbours, and reported by the checks."""
    result = dg.materialize(
        [weather_reference], partition_key=key(date(2025, 1, 2)), instance=platform.instance,
        resources={"warehouse": platform.warehouse},
        run_config=dg.RunConfig(ops={"risk__weather_reference": {"config": {"try_region": 7}}}))
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["implausible_values_excluded"].passed
    flagged = checks["no_implausible_source_values"]
    assert not flagged.passed and flagged.severity == dg.AssetCheckSeverity.WARN
    assert "66.0 m/s between neighbour hours 4.0 / 4.0 m/s" in flagged.metadata["rejected_values"].value

    rows = platform.query("select distinct ts_utc, value from risk.weather_flags "
                          "where network_id = ? and weather_source = 'reference'", [NETWORK])
    # 22 h MEZ of 4 January; 2 January's 63 m/s spike lies in the partition's horizon too.
    assert {(ts.astimezone(ZURICH).strftime("%m-%d %H"), value) for ts, value in rows} == {
        ("01-02 22", 63.0), ("01-04 22", 66.0)}
    spike = datetime(2025, 1, 4, 21, tzinfo=ZoneInfo("UTC"))
    highest, interpolated, value = platform.query(
        "select max(wind_speed_ms), bool_and(interpolated) filter (where ts_utc = ?), "
        "max(wind_speed_ms) filter (where ts_utc = ?) from risk.weather_reference_hourly "
        "where network_id = ? and issue_date = ?", [spike, spike, NETWORK, date(2025, 1, 2)])[0]
    assert highest < 20 and interpolated and value == 4.0


@pytest.fixture(scope="module")
def forecast_standin(platform):
    with running(create_app(platform.try_dir)) as base:
        patch = pytest.MonkeyPatch()
        patch.setenv("WEATHER_API_URL", base)
        yield base
        patch.undo()


@pytest.mark.slow
def test_forecast_path_against_the_standin(platform, backfilled, forecast_standin):
    day = LAST + timedelta(days=1)
    result = dg.materialize([weather_forecast, risk_tables], partition_key=key(day), instance=platform.instance,
                            resources={"warehouse": platform.warehouse})
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    points, hours = platform.query("select count(distinct point_id), count(distinct ts_utc) "
                                   "from risk.weather_forecast_hourly where issue_date = ?", [day])[0]
    assert points > 10 and hours == 72
    publication = current(platform.published, "risk", NETWORK)
    assert json.loads(publication.file("manifest.json").read_text())["extra"]["today"] == day.isoformat()
    daily = pd.read_parquet(publication.file("fragment_risk_daily.parquet"))
    models = daily.groupby(daily["date"] >= day)["forecast_model"].agg(lambda s: set(s.dropna()))
    assert models[True] == {"open-meteo:best_match"} and models[False] == {"dwd_try2010:12"}
    assert daily["date"].min() <= FIRST  # the history before the forecast is kept


@pytest.mark.slow
def test_risk_tables_follow_a_new_forecast(platform, backfilled, forecast_standin):
    today = datetime.now(ZURICH).date()
    selection = dg.AssetSelection.assets(*TABLE_KEYS)
    first = dg.evaluate_automation_conditions(defs=defs, instance=platform.instance, asset_selection=selection)
    assert first.total_requested == 0
    assert dg.materialize([weather_forecast], partition_key=key(today), instance=platform.instance,
                          resources={"warehouse": platform.warehouse}).success
    second = dg.evaluate_automation_conditions(defs=defs, instance=platform.instance, asset_selection=selection,
                                               cursor=first.cursor)
    requested = {(k, p) for k in TABLE_KEYS for p in second.get_requested_partitions(k)}
    assert requested == {(k, key(today)) for k in TABLE_KEYS}


@pytest.mark.slow
def test_dbt_marts_answer_most_alert_km_last_month(platform, backfilled, tmp_path):
    proc = subprocess.run(
        [str(DBT), "build", "--project-dir", str(PROJECT_ROOT / "dbt_project"),
         "--profiles-dir", str(PROJECT_ROOT / "dbt_project"), "--target-path", str(tmp_path / "target"),
         "--log-path", str(tmp_path / "logs"), "--select", "path:models/staging/risk", "path:models/marts/risk",
         "--vars", json.dumps({"as_of": "2025-08-05T09:00:00+00:00"})],
        env={**os.environ, "GRID_WAREHOUSE": platform.warehouse.path, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    assert {r["status"] for r in results} == {"success", "pass"}

    top = platform.query("select rank, line_name, km_alert from risk_top_lines_last_month "
                         "where network_id = ? order by rank limit 3", [NETWORK])
    truth = platform.query("""
        select line_name, sum(km_alert) as km from risk.risk_km
        where level = 'line' and network_id = ? and date between '2025-07-01' and '2025-07-31'
        group by line_name having sum(km_alert) > 0 order by km desc, line_name limit 3""", [NETWORK])
    assert [(line, pytest.approx(km)) for _, line, km in top] == truth
    assert [r for r, _, _ in top] == [1, 2, 3]
    events = platform.query("select event_days, alert_days from risk_events_monthly where network_id = ? "
                            "and risk_vector = 'heat' and month_start = '2025-07-01'", [NETWORK])
    assert events and events[0][1] >= 4  # heat ALERT on 15 .. 18 July at least


def test_a_network_without_trees_has_a_layer_and_a_network_without_a_layer_fails(tmp_path):
    from grid_platform.assets.risk import read_vegetation_trees

    warehouse = WarehouseResource(path=str(tmp_path / "w.duckdb"), pipelines_dir=str(tmp_path / "dlt"))
    with pytest.raises(dg.Failure, match="no vegetation layer for 'all_cable'"):
        read_vegetation_trees(warehouse, "all_cable")
    # An all-cable network (e.g. an LV grid) grows no trees, and its risk run needs none.
    warehouse.replace_rows("risk", "vegetation_layers", pd.DataFrame([{"network_id": "all_cable", "trees": 0}]),
                           {"network_id": "all_cable"})
    warehouse.replace_rows("risk", "vegetation_trees",
                           pd.DataFrame({"network_id": ["other"], "tree_id": ["t1"], "height_m": [20.0]}),
                           {"network_id": "other"})
    assert read_vegetation_trees(warehouse, "all_cable").empty
    with pytest.raises(dg.Failure, match="'missing'"):
        read_vegetation_trees(warehouse, "missing")


def test_a_reference_range_too_large_for_one_run_fails_before_building_rows(platform, monkeypatch):
    import grid_platform.assets.risk as risk_module

    # oberrhein_mv has 29 weather points: 29 x 2 days x 72 h = 4,176 rows, above a budget of 1,000.
    monkeypatch.setattr(risk_module, "MAX_REFERENCE_ROWS", 1000)
    result = dg.materialize([weather_reference], instance=platform.instance, raise_on_error=False,
                            resources={"warehouse": platform.warehouse},
                            tags=range_tags(date(2025, 3, 1), date(2025, 3, 2)))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "'oberrhein_mv'" in message and "backfill at most" in message and "rows" in message
