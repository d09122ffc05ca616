"""The ledger asset, its dead-letter check and the retry job, against the nudging stand-in on a
free port: deliveries parked after failing make the check fail (listing them), the retry job
sends each exactly once and the check passes again; the alerts_bi dbt models build on the export."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from alerts_wiring_fixtures import ALERT_ENV, GROUPS, NETWORK, alert_grid

from grid_platform.assets.alerts import ALERT_DISPATCHES, DEAD_LETTER_CHECK, alert_dispatches, no_dead_letters
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.sensors.alerts import (
    alert_dead_letter_retry_job,
    alert_dispatch_job,
    risk_publication_event,
)
from grid_platform.settings import PROJECT_ROOT
from grid_platform.store import dispatch as ledger

DBT = Path(sys.executable).with_name("dbt")


@pytest.fixture
def grid(tmp_path, sessions, sqlite_url, monkeypatch):
    for name, value in {**ALERT_ENV, "GRID_DISPATCH_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    return alert_grid(tmp_path, sessions, sqlite_url)


@pytest.fixture
def warehouse(tmp_path) -> WarehouseResource:
    return WarehouseResource(path=str(tmp_path / "warehouse.duckdb"), pipelines_dir=str(tmp_path / "dlt"))


def export(resources: dict, instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    """Materialise the ledger asset with its check; the check's evaluation."""
    result = dg.materialize([alert_dispatches, no_dead_letters], resources=resources, instance=instance)
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.asset_key, evaluation.check_name) == (ALERT_DISPATCHES, DEAD_LETTER_CHECK)
    return evaluation


def statuses(warehouse: WarehouseResource) -> list[tuple[str, str, int]]:
    with duckdb.connect(warehouse.path, read_only=True) as con:
        return con.execute("select network_id, status, count(*) from alerts.dispatches group by all order by all"
                           ).fetchall()


@pytest.mark.slow
def test_dead_letters_fail_the_check_until_retried(grid, nudging, warehouse):
    resources = {"alerts": grid.resource(nudging.url), "warehouse": warehouse}
    event = risk_publication_event("run-1", NETWORK, grid.today, grid.resource(nudging.url).alert_config())
    run_config = {"ops": {"dispatch_alert_event": {"config": {**event.as_dict(), "source": "dagster"}}}}
    with dg.instance_for_test() as instance:
        nudging.faults(error_rate=1.0)  # every request answers 5xx: one round, then parked
        dispatched = alert_dispatch_job.execute_in_process(run_config=run_config, resources=resources,
                                                          instance=instance)
        [logged] = dispatched.get_asset_check_evaluations()
        assert not logged.passed and logged.metadata["dead_letters"].value == GROUPS

        failing = export(resources, instance)
        assert not failing.passed and failing.severity == dg.AssetCheckSeverity.ERROR
        assert failing.metadata["dead_letters"].value == GROUPS and failing.metadata["networks"].value == NETWORK
        assert failing.metadata["parked"].value.count(f"grid_risk_report|{NETWORK}|") == GROUPS
        assert "HTTP 5" in failing.metadata["parked"].value
        assert statuses(warehouse) == [(NETWORK, "dead_letter", GROUPS)]
        assert nudging.deliveries() == []

        # A rerun of the dispatch does not revive parked deliveries: only the retry from the UI does.
        nudging.faults()
        assert alert_dispatch_job.execute_in_process(run_config=run_config, resources=resources,
                                                     instance=instance).success
        assert nudging.deliveries() == []

        retried = alert_dead_letter_retry_job.execute_in_process(resources=resources, instance=instance)
        [after] = retried.get_asset_check_evaluations()
        assert after.passed and after.metadata["dead_letters"].value == 0
        assert len(nudging.deliveries()) == GROUPS

        # Retrying again (nothing parked) sends nothing more; the export and the check agree.
        assert alert_dead_letter_retry_job.execute_in_process(resources=resources, instance=instance).success
        assert len(nudging.deliveries()) == GROUPS
        assert export(resources, instance).passed
        assert statuses(warehouse) == [(NETWORK, "sent", GROUPS)]
        materialization = instance.get_latest_materialization_event(ALERT_DISPATCHES).asset_materialization
        assert materialization.metadata["dagster/row_count"].value == GROUPS


def test_retry_of_selected_keys_only(grid, sessions, nudging, warehouse):
    resources = {"alerts": grid.resource(nudging.url), "warehouse": warehouse}
    event = risk_publication_event("run-2", NETWORK, grid.today, grid.resource(nudging.url).alert_config())
    with dg.instance_for_test() as instance:
        nudging.faults(error_rate=1.0)
        alert_dispatch_job.execute_in_process(resources=resources, instance=instance, run_config={
            "ops": {"dispatch_alert_event": {"config": {**event.as_dict(), "source": "dagster"}}}})
        nudging.faults()
        with sessions.begin() as session:
            first, second = sorted(d.key for d in ledger.dead_letters(session))
        result = alert_dead_letter_retry_job.execute_in_process(resources=resources, instance=instance, run_config={
            "ops": {"retry_dead_letters": {"config": {"keys": [first, "no|such|key|x"]}}}})
        [evaluation] = result.get_asset_check_evaluations()
        assert not evaluation.passed and second in evaluation.metadata["parked"].value
        assert [d["user_id"] for d in nudging.deliveries()] == [first.split("|")[2]]


@pytest.mark.slow
def test_alerts_bi_models_build_on_the_export(grid, nudging, warehouse, tmp_path):
    resources = {"alerts": grid.resource(nudging.url), "warehouse": warehouse}
    event = risk_publication_event("run-3", NETWORK, grid.today, grid.resource(nudging.url).alert_config())
    with dg.instance_for_test() as instance:
        alert_dispatch_job.execute_in_process(resources=resources, instance=instance, run_config={
            "ops": {"dispatch_alert_event": {"config": {**event.as_dict(), "source": "dagster"}}}})
        export(resources, instance)
    project = PROJECT_ROOT / "dbt_project"
    env = dict(os.environ, GRID_WAREHOUSE=warehouse.path, DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    build = subprocess.run(
        [str(DBT), "build", "--select", "stg_alert_dispatches", "alert_dispatch_daily", "--project-dir",
         str(project), "--profiles-dir", str(project), "--target-path", str(tmp_path / "dbt_target"),
         "--log-path", str(tmp_path / "dbt_logs"), "--warn-error"],
        check=False, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-2000:]
    with duckdb.connect(warehouse.path, read_only=True) as con:
        rows = con.execute("select network_id, period_date, channel, recipient_groups, sent, dead_letters, "
                           "all_delivered from main.alert_dispatch_daily").fetchall()
    assert rows == [(NETWORK, grid.today, "ingest", GROUPS, GROUPS, 0, True)]
