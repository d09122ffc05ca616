"""MQTT run events through the real Mosquitto on 127.0.0.1:1883 (no mock).

Events published while the consumer is stopped wait in its persistent session and are all
processed after it reconnects, none twice. Other tests may publish on the same topics at the
same time, so assertions only look at this test's run ids.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator

import pytest
from alerts_fixtures import MQTT_URL, fragment_day, mqtt_consumer, publish_risk_km

from grid_platform.alerts import mqtt
from grid_platform.alerts.config import AlertConfig
from grid_platform.alerts.delivery import Channels
from grid_platform.alerts.dispatch import process_recorded_events
from grid_platform.alerts.events import PipelineRunEvent, record_run_events
from grid_platform.alerts.nudging import NudgingClient, RetryPolicy
from grid_platform.store import dispatch as ledger
from grid_platform.store import rules as rule_store
from grid_platform.store.recipients import synthetic_user_id

FLOW = "grid-resilience-flow"

pytestmark = pytest.mark.services


@pytest.fixture
def consumer_id() -> Iterator[str]:
    with mqtt_consumer("grid-alerts-test") as client_id:
        yield client_id


def event(run_id: str, status: str = "completed", namespace: str = "grid", flow: str = FLOW) -> PipelineRunEvent:
    return PipelineRunEvent(flow=flow, namespace=namespace, status=status, run_id=run_id,
                            timestamp="2026-07-01T08:04:00+00:00", duration_ms=1200)


def drain_mine(sessions, client_id: str, prefix: str, handle=None) -> tuple[mqtt.DrainResult, list]:
    """Drain like a sensor tick: record each batch, then let it be acked."""
    recorded = []

    def record(batch: list[mqtt.ReceivedMessage]) -> None:
        if handle is not None:
            handle(batch)
        result = record_run_events(sessions, [m.payload for m in batch])
        recorded.extend(e.run_id for e in result.new if e.run_id.startswith(prefix))

    return mqtt.drain(MQTT_URL, record, client_id=client_id, max_wait_s=8, idle_s=0.4), recorded


def test_events_published_while_stopped_are_processed_once(sessions, consumer_id):
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    first, _ = drain_mine(sessions, consumer_id, prefix)  # creates the session and its subscription
    assert first.enabled and first.session_present is False

    # Consumer stopped: 30 events (more than the broker's in-flight window), one sent twice, one garbage.
    published = [event(f"{prefix}{i:02d}", namespace="grid" if i % 2 else f"celine.{i}") for i in range(30)]
    for e in published:
        assert mqtt.publish_run_event(MQTT_URL, e)
    assert mqtt.publish_run_event(MQTT_URL, published[3])  # the publisher retried: at least once
    mqtt.publish(MQTT_URL, "celine/pipelines/runs/grid", b"{not json")

    again, recorded = drain_mine(sessions, consumer_id, prefix)
    assert again.session_present is True
    assert sorted(recorded) == sorted(e.run_id for e in published)

    # A tick that dies before recording acks nothing: everything comes back, nothing is recorded twice.
    late = event(f"{prefix}late")
    mqtt.publish_run_event(MQTT_URL, late)

    def crash(batch):
        raise RuntimeError("sensor tick died")

    with pytest.raises(RuntimeError, match="sensor tick died"):
        drain_mine(sessions, consumer_id, prefix, handle=crash)
    _, recorded = drain_mine(sessions, consumer_id, prefix)
    assert recorded == [late.run_id]
    _, recorded = drain_mine(sessions, consumer_id, prefix)
    assert recorded == []
    with sessions.begin() as session:
        mine = [e for e in ledger.unhandled_events(session, limit=1000) if e.run_id.startswith(prefix)]
    assert len(mine) == 31


def test_mqtt_event_dispatches_once(tmp_path, sessions, consumer_id, nudging):
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    published = tmp_path / "published"
    publish_risk_km(published, "ckw", [fragment_day("2026-07-01", "wind", "Sursee", "L1", 1000, "ALERT")])
    with sessions.begin() as session:
        rule_store.create_rule(session, user_id="u1", network_id="ckw", risk_types=["wind"], threshold="ALERT",
                               recipients="ops@ckw.ch")
    drain_mine(sessions, consumer_id, prefix)
    # The same run announced twice (redelivery) plus a failed run and another flow's run.
    for e in (event(f"{prefix}run"), event(f"{prefix}run"), event(f"{prefix}bad", status="failed"),
              event(f"{prefix}other", flow="meters-flow")):
        mqtt.publish_run_event(MQTT_URL, e)
    _, recorded = drain_mine(sessions, consumer_id, prefix)
    assert sorted(recorded) == sorted([f"{prefix}run", f"{prefix}bad", f"{prefix}other"])

    config = AlertConfig(enabled=True)
    with Channels(NudgingClient(nudging.url, policy=RetryPolicy(timeout_s=2, max_tries=2, backoff_s=0.01))) as ch:
        summaries = process_recorded_events(sessions=sessions, channels=ch, config=config, published_root=published)
        mine = {s.event_key: s for s in summaries if s.event_key.startswith(prefix)}
        assert mine[f"{prefix}run|completed"].reports.sent == 1
        assert not mine[f"{prefix}bad|failed"].dispatched and not mine[f"{prefix}other|completed"].dispatched
        assert [s for s in process_recorded_events(sessions=sessions, channels=ch, config=config,
                                                   published_root=published)
                if s.event_key.startswith(prefix)] == []
    [delivery] = [d for d in nudging.deliveries() if d["facts"]["period"] == "2026-07-01"]
    assert (delivery["community_id"], delivery["user_id"]) == ("ckw", synthetic_user_id(["ops@ckw.ch"]))


def test_mqtt_off_and_unreachable():
    off = mqtt.drain(None, lambda batch: None, client_id="unused")
    assert (off.enabled, off.detail) == (False, "MQTT is off (MQTT_URL unset)")
    assert mqtt.publish("", "celine/pipelines/runs/grid", {"x": 1}) is False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(mqtt.MqttUnavailable):
        mqtt.drain(f"mqtt://127.0.0.1:{port}", lambda batch: None, client_id="unused", connect_timeout_s=2)
    with pytest.raises(ValueError, match="MQTT_URL"):
        mqtt.parse_mqtt_url("http://127.0.0.1:1883")
    broker = mqtt.parse_mqtt_url("mqtts://svc%40grid:p%3Ass@broker.example")
    assert (broker.host, broker.port, broker.tls, broker.username, broker.password) == \
        ("broker.example", 8883, True, "svc@grid", "p:ss")
    assert json.loads(json.dumps(event("r").as_dict()))["run_id"] == "r"
