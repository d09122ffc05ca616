"""Tests over the Definitions themselves: everything loads, every asset is described, and the
schedules ask for the right partitions."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from grid_platform.definitions import defs
from grid_platform.sensors.ckw import ckw_prices_hourly, ckw_tra_signals_quarter_hourly

TZ = ZoneInfo("Europe/Zurich")


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)
    assert {j.name for j in defs.resolve_all_job_defs()} >= {
        "ckw_prices_job", "ckw_tra_signals_job", "ckw_plant_job", "ckw_connectivity_job", "ckw_marts_job"}


def test_every_asset_has_group_kinds_owner_and_description(graph):
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key
        assert node.kinds, key
        assert node.owners, key
        assert node.description, key


def test_dbt_sources_map_to_the_dlt_assets_without_stubs(graph):
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"ckw_prices", "ckw_tra_signals", "ckw_plant_status", "ckw_api_health_log", "ckw_rejects"} <= keys
    assert graph.get(dg.AssetKey("stg_ckw_prices")).parent_keys == {dg.AssetKey("ckw_prices")}
    # Every parent of every asset is itself a materialisable asset (no external stubs).
    for key in graph.get_all_asset_keys():
        for parent in graph.get(key).parent_keys:
            assert graph.get(parent).is_materializable, (key, parent)


def test_every_step_holding_the_warehouse_runs_in_the_duckdb_pool():
    # One DuckDB file, one writer at a time: any op that opens the warehouse takes the pool's slot;
    # the rest (parallel risk partitions, HTTP fetches, graph builds) need not wait for it.
    ops = [op for node in [*defs.assets, *defs.asset_checks] for op in node.node_def.iterate_op_defs()]
    holders = [op for op in ops if "warehouse" in op.required_resource_keys]
    assert len(holders) > 10
    for op in holders:
        assert op.pool == "duckdb", op.name


def test_schedules_and_sensors_run_by_default():
    for schedule in defs.schedules:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, schedule.name
        assert schedule.execution_timezone == "Europe/Zurich"
    for sensor in defs.sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name


def test_prices_schedule_asks_for_tomorrow_only_once_published():
    morning = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 29, 9, 5, tzinfo=TZ))
    assert [r.partition_key for r in ckw_prices_hourly(morning)] == ["2026-03-29"]
    noon = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 29, 12, 5, tzinfo=TZ))
    requests = list(ckw_prices_hourly(noon))
    assert [r.partition_key for r in requests] == ["2026-03-29", "2026-03-30"]
    assert len({r.run_key for r in requests}) == 2


def test_tra_schedule_reads_yesterday():
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 1, 1, 0, 15, tzinfo=TZ))
    assert ckw_tra_signals_quarter_hourly(ctx).partition_key == "2025-12-31"
