"""Pipeline-run events (alerts-and-access.md §4): parsing, filters in order, horizon, networks, config."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime

import pytest

from grid_platform.alerts.config import AlertConfig, load_alert_config
from grid_platform.alerts.events import (
    PipelineRunEvent,
    grid_run_event,
    horizon_dates,
    parse_run_event,
    record_run_events,
    skip_reason,
    target_networks,
)

FLOW = "grid-resilience-flow"


def payload(**changes) -> dict:
    return {"flow": FLOW, "namespace": "grid", "status": "completed", "run_id": "run-1",
            "timestamp": "2026-07-01T08:02:11+00:00", "duration_ms": 5400, "error": None, **changes}


def test_parse_valid_event():
    event = parse_run_event(json.dumps(payload()).encode(), topic="celine/pipelines/runs/grid")
    assert event == PipelineRunEvent(FLOW, "grid", "completed", "run-1", "2026-07-01T08:02:11+00:00", 5400, None)
    assert event.key == "run-1|completed" and event.topic == "celine/pipelines/runs/grid"
    minimal = {k: v for k, v in payload().items() if k not in ("duration_ms", "error")}
    assert parse_run_event(json.dumps(minimal)).duration_ms is None


@pytest.mark.parametrize("raw", [
    b"not json", b"\xff\xfe", b"[1, 2]", b"null", b"{",
    json.dumps(payload(run_id="")).encode(), json.dumps(payload(status="done")).encode(),
    json.dumps(payload(flow=None)).encode(), json.dumps(payload(duration_ms="12")).encode(),
    json.dumps(payload(duration_ms=True)).encode(), json.dumps(payload(error=3)).encode(),
    json.dumps(payload(timestamp=20260701)).encode(), b"[" * 100000,
])
def test_unparseable_message_dropped_never_raises(raw, caplog):
    with caplog.at_level(logging.WARNING):
        assert parse_run_event(raw, topic="celine/pipelines/runs/grid") is None
    assert "dropping unparseable pipeline-run message" in caplog.text


def test_filters_in_order(caplog):
    enabled = AlertConfig(enabled=True)
    disabled = AlertConfig()
    failed_other_flow = PipelineRunEvent("other-flow", "grid", "failed", "r", None)
    assert skip_reason(failed_other_flow, disabled).startswith("status 'failed'")
    assert skip_reason(PipelineRunEvent("other-flow", "grid", "completed", "r", None), disabled).startswith("flow")
    event = PipelineRunEvent(FLOW, "celine.grid", "completed", "r", None)
    with caplog.at_level(logging.INFO, logger="grid_platform.alerts.events"):
        assert skip_reason(event, disabled) == "alerts disabled (GRID_ALERTS_ENABLED=false)"
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 1 and FLOW in info[0].getMessage() and "celine.grid" in info[0].getMessage()
    assert skip_reason(event, enabled) is None
    assert skip_reason(PipelineRunEvent("my-flow", "grid", "completed", "r", None),
                       AlertConfig(enabled=True, pipeline_flow="my-flow")) is None


def test_horizon():
    event = PipelineRunEvent(FLOW, "grid", "completed", "r", "2026-07-01T23:30:00+02:00")
    run_date = event.run_date()
    assert run_date == date(2026, 7, 1)  # the date part as written
    assert horizon_dates(run_date, 3) == [date(2026, 7, 1), date(2026, 7, 2), date(2026, 7, 3)]
    assert horizon_dates(run_date, 1) == [date(2026, 7, 1)]
    assert horizon_dates(run_date, 0) == []
    assert PipelineRunEvent(FLOW, "grid", "completed", "r", "2026-12-31").run_date() == date(2026, 12, 31)
    assert PipelineRunEvent(FLOW, "grid", "completed", "r", "2026-07-01 junk").run_date() == date(2026, 7, 1)
    today = date(2026, 1, 5)
    assert PipelineRunEvent(FLOW, "grid", "completed", "r", "yesterday").run_date(today) == today
    assert PipelineRunEvent(FLOW, "grid", "completed", "r", None).run_date() == datetime.now(UTC).date()


def test_networks_resolution():
    calls = []

    def with_rules():
        calls.append(1)
        return ["ewl", "ckw", "", "ckw"]

    config = AlertConfig()
    assert target_networks("grid", config, with_rules) == ["ckw", "ewl"]
    assert target_networks("celine.grid", config, with_rules) == ["ckw", "ewl"]
    assert len(calls) == 2
    for namespace in ("ewl", "mygrid", "grid.ckw", "grid2"):
        assert target_networks(namespace, config, with_rules) == [namespace]
    assert len(calls) == 2  # a single-network namespace reads no rules
    assert target_networks("prod.dso", AlertConfig(pipeline_namespace="dso"), with_rules) == ["ckw", "ewl"]


def test_grid_run_event_from_dagster_run():
    config = AlertConfig(enabled=True)
    event = grid_run_event("dagster-run-7", datetime(2026, 7, 1, 8, 4, tzinfo=UTC), config)
    assert skip_reason(event, config) is None and event.run_date() == date(2026, 7, 1)
    with pytest.raises(ValueError):
        grid_run_event("r", datetime(2026, 7, 1, 8, 4), config)


def test_config_from_env():
    assert load_alert_config({}) == AlertConfig()
    config = load_alert_config({"GRID_ALERTS_ENABLED": "TRUE", "GRID_ALERT_HORIZON_DAYS": "5",
                                "GRID_PIPELINE_FLOW": "f", "GRID_PIPELINE_NAMESPACE": "ns",
                                "GRID_APP_URL": "https://grid.example/", "GRID_WEBHOOK_SECRET": "s3"})
    assert (config.enabled, config.horizon_days, config.pipeline_flow, config.pipeline_namespace,
            config.app_url, config.webhook_secret) == (True, 5, "f", "ns", "https://grid.example", "s3")
    for bad in ({"GRID_ALERTS_ENABLED": "maybe"}, {"GRID_ALERT_HORIZON_DAYS": "3.5"},
                {"GRID_ALERT_HORIZON_DAYS": "-1"}, {"GRID_DISPATCH_MAX_ATTEMPTS": "0"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            load_alert_config(bad)


def test_record_run_events_once(sessions):
    first = record_run_events(sessions, [json.dumps(payload()), json.dumps(payload(status="failed")), b"garbage",
                                         json.dumps(payload())])
    assert [e.key for e in first.new] == ["run-1|completed", "run-1|failed"]
    assert (first.already_seen, first.dropped) == (1, 1)
    again = record_run_events(sessions, [json.dumps(payload())])
    assert (again.new, again.already_seen) == ([], 1)
