"""The production instance on the machine's real PostgreSQL server: deploy/dagster.postgres.yaml
with DAGSTER_PG_URL pointing at a fresh database (created and dropped by the test) stores a real
materialisation, a schedule tick and a sensor tick; the embedded dagster.yaml and the PostgreSQL
variant differ in the storage section only."""

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import TickData, TickStatus

from grid_platform.assets.topology import networks
from grid_platform.production import LOCAL_SERVER, POSTGRES_VARIANT, scratch_postgres_instance
from grid_platform.sensors.risk import risk_forecast_hourly
from grid_platform.settings import PROJECT_ROOT

SERVER = LOCAL_SERVER
VARIANT = POSTGRES_VARIANT


@pytest.fixture
def pg_instance(tmp_path):
    # The machine's server is part of the test environment: unreachable is a failure, not a skip.
    with scratch_postgres_instance(tmp_path / "dagster", SERVER, prefix="dagster_test") as (instance, name):
        yield instance, name


def _tables(database: str, sql: str) -> list[tuple]:
    with psycopg.connect(f"{SERVER}/{database}") as con:
        return con.execute(sql).fetchall()


@dg.asset(group_name="ops_test")
def feeder_count() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"feeders": 12})


@dg.sensor(target=[feeder_count], minimum_interval_seconds=30)
def feeder_watch(context: dg.SensorEvaluationContext):
    return dg.RunRequest(run_key=f"feeders@{context.cursor or 0}")


def test_postgres_instance_records_runs_and_ticks(pg_instance):
    instance, database = pg_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"

    result = dg.materialize([feeder_count], instance=instance)
    assert result.success
    event = instance.get_latest_materialization_event(dg.AssetKey("feeder_count"))
    assert event.run_id == result.run_id and event.asset_materialization.metadata["feeders"].value == 12
    assert _tables(database, "select count(*) from runs where status = 'SUCCESS'") == [(1,)]

    # The real schedule evaluated against this instance (its dynamic partitions live there too).
    instance.add_dynamic_partitions(networks.name, ["oberrhein_mv"])
    when = datetime(2026, 3, 29, 6, 0, tzinfo=ZoneInfo("Europe/Zurich"))
    requests = risk_forecast_hourly(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    sensed = feeder_watch(dg.build_sensor_context(instance=instance, cursor="7"))
    ticks = [
        ("risk_forecast_hourly", InstigatorType.SCHEDULE, [r.run_key for r in requests]),
        ("feeder_watch", InstigatorType.SENSOR, [sensed.run_key]),
    ]
    for name, kind, run_keys in ticks:
        instance.create_tick(TickData(instigator_origin_id=f"grid:{name}", instigator_name=name, instigator_type=kind,
                                      status=TickStatus.SUCCESS, timestamp=time.time(), run_ids=[], run_keys=run_keys,
                                      selector_id=f"sel:{name}"))
    stored = {name: instance.get_ticks(f"grid:{name}", f"sel:{name}") for name, _, _ in ticks}
    assert stored["risk_forecast_hourly"][0].tick_data.run_keys == ["oberrhein_mv|2026-03-29@06"]
    assert stored["feeder_watch"][0].tick_data.run_keys == ["feeders@7"]
    assert _tables(database, "select count(*) from job_ticks") == [(2,)]


def test_instance_variants_differ_in_storage_only():
    embedded = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    production = yaml.safe_load(VARIANT.read_text())
    assert "storage" not in embedded
    assert production.pop("storage") == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert production == embedded
    limits = embedded["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "dagster/backfill", "limit": 2} in limits
    assert embedded["run_retries"]["enabled"] and embedded["run_monitoring"]["cancel_timeout_seconds"] > 0
