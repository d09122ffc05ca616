"""Dagster wiring of alert dispatch: the risk run-status sensor, the MQTT sensor against the real
Mosquitto on 127.0.0.1:1883, the daily digest schedule and the dispatch job against the nudging
stand-in (deliveries counted at the stand-in)."""

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from alerts_fixtures import MQTT_URL, mqtt_consumer
from alerts_wiring_fixtures import ALERT_ENV, GROUPS, NETWORK, alert_grid, publish_run

from grid_platform.alerts import mqtt
from grid_platform.alerts.events import PipelineRunEvent
from grid_platform.sensors.alerts import (
    alert_dispatch_job,
    grid_alerts_daily_digest,
    grid_alerts_mqtt,
    grid_alerts_on_risk,
)
from grid_platform.store import dispatch as ledger
from grid_platform.store import rules as rule_store

FLOW = "grid-resilience-flow"


@pytest.fixture
def alert_env(monkeypatch):
    for name, value in ALERT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def grid(tmp_path, sessions, sqlite_url, alert_env):
    return alert_grid(tmp_path, sessions, sqlite_url)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def risk_sensor_tick(instance, run_result, resource):
    context = dg.build_run_status_sensor_context(
        sensor_name=grid_alerts_on_risk.name, dagster_instance=instance, dagster_run=run_result.dagster_run,
        dagster_event=run_result.get_run_success_event(), resources={"alerts": resource})
    return grid_alerts_on_risk(context)


def run_dispatch(request: dg.RunRequest, resource, instance, **options) -> dg.ExecuteInProcessResult:
    return alert_dispatch_job.execute_in_process(run_config=request.run_config, resources={"alerts": resource},
                                                 instance=instance, **options)


def test_risk_publication_dispatches_its_network_once(grid, nudging, instance):
    resource = grid.resource(nudging.url)
    requests = risk_sensor_tick(instance, publish_run(instance, NETWORK, grid.today), resource)
    [request] = requests
    config = request.run_config["ops"]["dispatch_alert_event"]["config"]
    assert (config["namespace"], config["timestamp"], config["status"]) == (NETWORK, grid.today.isoformat(),
                                                                           "completed")

    result = run_dispatch(request, resource, instance)
    assert result.success
    assert len(nudging.deliveries()) == GROUPS
    assert {d["community_id"] for d in nudging.deliveries()} == {NETWORK}
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["dead_letters"].value == 0

    # The next hourly publication of the same day: dispatch runs again, the ledger sends nothing new.
    [again] = risk_sensor_tick(instance, publish_run(instance, NETWORK, grid.today), resource)
    assert again.run_key != request.run_key
    assert run_dispatch(again, resource, instance).success
    assert len(nudging.deliveries()) == GROUPS


def test_risk_sensor_skips_backfills_the_kill_switch_and_runs_without_risk(grid, nudging, instance, monkeypatch):
    resource = grid.resource(nudging.url)
    past = risk_sensor_tick(instance, publish_run(instance, NETWORK, grid.today - timedelta(days=3)), resource)
    assert isinstance(past, dg.SkipReason) and "past dates" in past.skip_message

    monkeypatch.setenv("GRID_ALERTS_ENABLED", "false")
    off = risk_sensor_tick(instance, publish_run(instance, NETWORK, grid.today), resource)
    assert isinstance(off, dg.SkipReason) and "GRID_ALERTS_ENABLED=false" in off.skip_message

    unrelated = alert_dispatch_job.execute_in_process(instance=instance, resources={"alerts": resource}, run_config={
        "ops": {"dispatch_alert_event": {"config": {"flow": "other", "namespace": NETWORK, "run_id": "x"}}}})
    assert isinstance(risk_sensor_tick(instance, unrelated, resource), dg.SkipReason)
    assert nudging.deliveries() == []


def test_unreadable_risk_data_fails_the_dispatch_run(grid, sessions, nudging, instance):
    resource = grid.resource(nudging.url)
    [request] = risk_sensor_tick(instance, publish_run(instance, "nowhere", grid.today), resource)
    with sessions.begin() as session:  # a rule, but no risk publication for its network
        rule_store.create_rule(session, user_id="u9", network_id="nowhere", risk_types=["wind"], threshold="ALERT")
    result = run_dispatch(request, resource, instance, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "no published 'risk' dataset for network 'nowhere'" in failure.step_failure_data.user_failure_data.description
    with sessions.begin() as session:  # left unhandled: re-executing the run dispatches it
        assert [e.run_id for e in ledger.unhandled_events(session)] == [request.run_config["ops"][
            "dispatch_alert_event"]["config"]["run_id"]]


def test_daily_digest_asks_for_every_network_with_a_rule(grid, nudging, instance, monkeypatch):
    resource = grid.resource(nudging.url)
    at = datetime.combine(grid.today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=8)
    request = grid_alerts_daily_digest(dg.build_schedule_context(instance=instance, scheduled_execution_time=at,
                                                                 resources={"alerts": resource}))
    config = request.run_config["ops"]["dispatch_alert_event"]["config"]
    assert (config["namespace"], config["source"], request.run_key) == (
        "grid", "schedule", f"digest:{grid.today.isoformat()}|completed")
    assert run_dispatch(request, resource, instance).success
    assert len(nudging.deliveries()) == GROUPS

    monkeypatch.setenv("GRID_ALERTS_ENABLED", "false")
    off = grid_alerts_daily_digest(dg.build_schedule_context(instance=instance, scheduled_execution_time=at,
                                                             resources={"alerts": resource}))
    assert isinstance(off, dg.SkipReason)


def test_mqtt_sensor_says_mqtt_is_off_without_url(grid, nudging, instance):
    context = dg.build_sensor_context(instance=instance, resources={"alerts": grid.resource(nudging.url)})
    skip = grid_alerts_mqtt(context)
    assert isinstance(skip, dg.SkipReason) and "MQTT is off" in skip.skip_message


# MQTT against the real broker ------------------------------------------------------------------

@pytest.fixture
def consumer_id(monkeypatch):
    with mqtt_consumer("grid-alerts-sensor-test") as client_id:
        monkeypatch.setenv("GRID_MQTT_CLIENT_ID", client_id)
        yield client_id


def run_event(run_id: str, *, status: str = "completed", flow: str = FLOW, namespace: str = NETWORK,
              timestamp: str | None = None) -> PipelineRunEvent:
    return PipelineRunEvent(flow=flow, namespace=namespace, status=status, run_id=run_id, timestamp=timestamp,
                            duration_ms=900)


def tick(resource, instance, cursor: str | None):
    """One evaluation as the daemon does it: a fresh context carrying the stored cursor."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerts": resource})
    result = grid_alerts_mqtt(context)
    return (result if isinstance(result, list) else []), context.cursor


def mine(requests: list[dg.RunRequest], prefix: str) -> list[str]:
    """Run ids of this test's events (other tests publish on the same topics)."""
    ids = [r.run_config["ops"]["dispatch_alert_event"]["config"]["run_id"] for r in requests]
    return sorted(i for i in ids if i.startswith(prefix))


@pytest.mark.services
@pytest.mark.slow
def test_mqtt_events_published_while_stopped_count_once(grid, sessions, nudging, instance, consumer_id):
    resource = grid.resource(nudging.url, MQTT_URL)
    prefix = f"s{uuid.uuid4().hex[:8]}-"
    day = grid.today.isoformat()
    _, cursor = tick(resource, instance, None)  # first tick: the broker now keeps a session for us

    # Sensor not running: completed runs (one published twice), a started one, another flow, garbage.
    completed = [run_event(f"{prefix}{i}", timestamp=f"{day}T08:0{i}:00+00:00") for i in range(4)]
    for event in [*completed, completed[1], run_event(f"{prefix}started", status="started"),
                  run_event(f"{prefix}other", flow="weather-flow")]:
        assert mqtt.publish_run_event(MQTT_URL, event)
    assert mqtt.publish(MQTT_URL, f"celine/pipelines/runs/{NETWORK}", b"{not json")

    requests, cursor = tick(resource, instance, cursor)
    assert mine(requests, prefix) == sorted(e.run_id for e in completed)
    assert len({r.run_key for r in requests}) == len(requests)
    with sessions.begin() as session:
        closed = {e.run_id: e.outcome["reason"] for e in [session.get(ledger.ProcessedEvent, k) for k in (
            f"{prefix}started|started", f"{prefix}other|completed")]}
    assert "not completed" in closed[f"{prefix}started"] and "is not" in closed[f"{prefix}other"]

    # Next ticks (and a restart: only the stored cursor survives) see nothing of ours again ...
    again, cursor = tick(resource, instance, cursor)
    assert mine(again, prefix) == []
    # ... until new events arrive while it is stopped once more.
    later = [run_event(f"{prefix}late{i}", timestamp=f"{day}T09:00:00+00:00") for i in range(2)]
    for event in later:
        assert mqtt.publish_run_event(MQTT_URL, event)
    requests_late, cursor = tick(resource, instance, cursor)
    assert mine(requests_late, prefix) == sorted(e.run_id for e in later)

    # Every recorded run goes through the one dispatch path: one report per group and run date.
    for request in [r for r in requests + requests_late if mine([r], prefix)]:
        assert run_dispatch(request, resource, instance).success
    assert len(nudging.deliveries()) == GROUPS
    with sessions.begin() as session:
        handled = [session.get(ledger.ProcessedEvent, f"{e.run_id}|completed") for e in completed + later]
        assert all(h is not None and h.handled_at is not None for h in handled)

