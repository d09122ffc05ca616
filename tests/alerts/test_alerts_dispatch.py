"""Alert dispatch end to end: published risk_km, rules in the state DB, the nudging stand-in.

Includes the issue's "done when": with the stand-in failing half of the requests, hanging
(client timeouts) and the dispatching process SIGKILLed between sending and recording,
every recipient group receives exactly one report per network and run date.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alerts_fixtures import fragment_day, publish_risk_km, webhook_receiver

from grid_platform.alerts.config import AlertConfig
from grid_platform.alerts.delivery import Channels, retry_due
from grid_platform.alerts.dispatch import DispatchFailed, RiskDataError, dispatch_for_event, load_risk_km
from grid_platform.alerts.events import PipelineRunEvent, grid_run_event
from grid_platform.alerts.nudging import NudgingClient, RetryPolicy, WebhookSender
from grid_platform.publish import publish
from grid_platform.settings import PROJECT_ROOT
from grid_platform.standins.server import running
from grid_platform.store import dispatch as ledger
from grid_platform.store import rules as rule_store
from grid_platform.store.recipients import synthetic_user_id

D_1, D0, D1, D2 = "2026-06-30", "2026-07-01", "2026-07-02", "2026-07-03"
FINISHED = datetime(2026, 7, 1, 8, 4, tzinfo=UTC)
FAST = RetryPolicy(timeout_s=2.0, max_tries=3, backoff_s=0.01, backoff_max_s=0.05)
OPS = synthetic_user_id(["ops@ckw.ch"])


@dataclass
class Grid:
    published: Path
    config: AlertConfig


def _rule(session, user, network, risk_types, threshold, recipients=None, active=True):
    return rule_store.create_rule(session, user_id=user, network_id=network, risk_types=risk_types,
                                  threshold=threshold, recipients=recipients, active=active)


@pytest.fixture
def grid(tmp_path, sessions) -> Grid:
    """Two networks: ckw (two groups) and ewl (one group, same inbox as a ckw group)."""
    published = tmp_path / "published"
    publish_risk_km(published, "ckw", [
        fragment_day(D_1, "wind", "Sursee", "L1", 900, "ALERT"),  # before the run date: ignored
        fragment_day(D0, "wind", "Sursee", "L1", 1200, "ALERT"),
        fragment_day(D0, "wind", "Sursee", "L1", 800, "WARNING"),
        fragment_day(D0, "wind", "Emmen", "L2", 500, "NORMAL"),
        fragment_day(D0, "heat", "Emmen", "K1", 400, "WARNING"),
        fragment_day(D1, "wind", "Sursee", "L1", 1000, "WARNING"),
        fragment_day(D1, "wind", "Emmen", "L2", 700, None),  # not assessed
    ])
    publish_risk_km(published, "ewl", [fragment_day(D0, "heat", "Luzern", "L9", 300, "ALERT", network="ewl")])
    with sessions.begin() as session:
        _rule(session, "u1", "ckw", ["wind"], "ALERT", "ops@ckw.ch")
        _rule(session, "u2", "ckw", ["heat"], "WARNING")  # settings route to the same inbox
        _rule(session, "u3", "ckw", ["heat"], "ALERT", "heat@ckw.ch")  # heat has no ALERT km
        _rule(session, "u4", "ckw", ["wind", "heat"], "WARNING")  # no address anywhere: own sub
        _rule(session, "u5", "ckw", ["wind"], "ALERT", "off@ckw.ch", active=False)
        _rule(session, "u1", "ewl", ["heat"], "ALERT", "OPS@ckw.ch")
        rule_store.update_settings(session, "u2", {"email_recipients": "ops@ckw.ch"})
    return Grid(published, AlertConfig(enabled=True, app_url="https://grid.example", lease_s=30))


def run_event(config: AlertConfig, **changes) -> PipelineRunEvent:
    event = grid_run_event("run-1", FINISHED, config)
    return PipelineRunEvent(**{**event.as_dict(), **changes})


def test_load_risk_km_reads_tratta_rows_of_the_dates(grid):
    rows = load_risk_km(grid.published, "ckw", [D0, D1])
    assert {(str(r["date"]), r["level"]) for r in rows} == {(D0, "tratta"), (D1, "tratta")}
    assert len(rows) == 4  # D0: L1 Sursee wind, L2 Emmen wind, K1 heat; D1: L1 (L2 was not assessed)
    with pytest.raises(RiskDataError, match="no published"):
        load_risk_km(grid.published, "nowhere", [D0])
    publish(grid.published, "risk", "broken", lambda d: (d / "risk_km.parquet").write_bytes(b"not parquet"))
    with pytest.raises(RiskDataError, match="cannot read"):
        load_risk_km(grid.published, "broken", [D0])


def test_dispatch_once_per_group_and_run_date(grid, sessions, nudging):
    with Channels(NudgingClient(nudging.url, policy=FAST)) as channels:
        summary = dispatch_for_event(run_event(grid.config), sessions=sessions, channels=channels,
                                     config=grid.config, published_root=grid.published)
        assert summary.dispatched and summary.period == D0 and summary.dates == [D0, D1, D2]
        assert [(n.network_id, n.rules, n.groups) for n in summary.networks] == [("ckw", 4, 2), ("ewl", 1, 1)]
        assert summary.reports.as_dict() == {"sent": 3, "skipped": 0, "failed": 0, "dead_lettered": 0}
        deliveries = {(d["community_id"], d["user_id"]): d for d in nudging.deliveries()}
        assert sorted(deliveries) == [("ckw", OPS), ("ckw", "u4"), ("ewl", OPS)]

        ops = deliveries[("ckw", OPS)]
        facts = ops["facts"]
        assert (facts["threshold"], facts["risk_types"], facts["email_recipients"]) == \
            ("WARNING", ["heat", "wind"], ["ops@ckw.ch"])
        assert (facts["period"], facts["dates"], facts["network_id"], facts["app_url"]) == \
            (D0, [D0, D1, D2], "ckw", "https://grid.example")
        wind0 = facts["days"][0]["vectors"][1]
        assert wind0["totals"] == {"n_tratte": 2, "km_total": 2.5, "km_alert": 1.2, "km_warning": 0.8,
                                   "pct_alert": 48.0, "pct_warning": 32.0, "risk_index": 64.0, "worst_level": "ALERT"}
        assert [line["line_name"] for line in wind0["top_lines"]] == ["L1"]
        assert facts["days"][2]["vectors"][1]["totals"]["n_tratte"] == 0  # D2: no rows, still present
        key = ledger.delivery_key("grid_risk_report", "ckw", OPS, D0)
        assert ops["idempotency_key"] == ledger.idempotency_key(key)
        assert deliveries[("ckw", "u4")]["facts"]["email_recipients"] == []
        assert deliveries[("ewl", OPS)]["facts"]["risk_types"] == ["heat"]

        # The same day again (another run, or the MQTT event of the same run): nothing re-sent.
        again = dispatch_for_event(run_event(grid.config, run_id="run-2"), sessions=sessions, channels=channels,
                                   config=grid.config, published_root=grid.published)
        assert again.reports.as_dict() == {"sent": 0, "skipped": 3, "failed": 0, "dead_lettered": 0}
        assert len(nudging.deliveries()) == 3
    with sessions.begin() as session:
        rows = ledger.deliveries(session)
        assert {(r.network_id, r.recipient_key, r.status, r.status_code, r.attempts) for r in rows} == {
            ("ckw", OPS, "sent", 200, 1), ("ckw", "u4", "sent", 200, 1), ("ewl", OPS, "sent", 200, 1)}


def test_filters_stop_before_reading_data(grid, sessions, nudging, caplog):
    nowhere = grid.published.parent / "nothing-published"
    with Channels(NudgingClient(nudging.url, policy=FAST)) as channels:
        def dispatch(event, config):
            return dispatch_for_event(event, sessions=sessions, channels=channels, config=config,
                                      published_root=nowhere)

        with caplog.at_level(logging.INFO):
            off = dispatch(run_event(grid.config), AlertConfig())
        assert (off.dispatched, off.reason) == (False, "alerts disabled (GRID_ALERTS_ENABLED=false)")
        assert not dispatch(run_event(grid.config, status="failed"), grid.config).dispatched
        assert not dispatch(run_event(grid.config, flow="other-flow"), grid.config).dispatched
        # A namespace naming a network without active rules: stop before reading its risk data.
        single = dispatch(run_event(grid.config, namespace="bkw"), grid.config)
        assert single.dispatched and [(n.network_id, n.rules) for n in single.networks] == [("bkw", 0)]
        empty = dispatch(run_event(grid.config), AlertConfig(enabled=True, horizon_days=0))
        assert empty.dates == [] and empty.networks == []
    assert nudging.stats()["requests"] == 0


def test_read_failure_fails_the_run_but_not_the_other_networks(grid, sessions, nudging, caplog):
    with sessions.begin() as session:
        _rule(session, "u9", "bkw", ["wind"], "ALERT", "bkw@ckw.ch")  # bkw has published nothing
    with (Channels(NudgingClient(nudging.url, policy=FAST)) as channels, caplog.at_level(logging.ERROR),
          pytest.raises(DispatchFailed, match="bkw") as failure):
        dispatch_for_event(run_event(grid.config), sessions=sessions, channels=channels, config=grid.config,
                           published_root=grid.published)
    summary = failure.value.summary
    assert [(n.network_id, n.reports.sent, n.error is not None) for n in summary.networks] == [
        ("bkw", 0, True), ("ckw", 2, False), ("ewl", 1, False)]
    assert any(r.levelno == logging.ERROR and "bkw" in r.getMessage() for r in caplog.records)
    assert len(nudging.deliveries()) == 3


def test_signed_webhooks(grid, sessions, nudging, caplog):
    app = webhook_receiver("hook-secret")
    with running(app) as hook_url:
        with sessions.begin() as session:
            rule_store.update_settings(session, "u4", {"webhook_url": hook_url + "/hook"})
        config = AlertConfig(enabled=True, webhook_secret="hook-secret")
        # Without a webhook sender (GRID_WEBHOOK_SECRET unset) webhooks are off.
        with caplog.at_level(logging.WARNING), Channels(NudgingClient(nudging.url, policy=FAST)) as channels:
            unsigned = dispatch_for_event(run_event(config), sessions=sessions, channels=channels,
                                          config=config, published_root=grid.published)
        assert unsigned.webhooks.sent == 0 and "GRID_WEBHOOK_SECRET is unset" in caplog.text
        for run in ("run-1", "run-2"):
            with Channels(NudgingClient(nudging.url, policy=FAST), WebhookSender("hook-secret", FAST)) as channels:
                summary = dispatch_for_event(run_event(config, run_id=run), sessions=sessions, channels=channels,
                                             config=config, published_root=grid.published)
        assert summary.webhooks.skipped == 1 and summary.reports.skipped == 3
    [received] = app.state.received
    assert received["valid"]
    assert (received["body"]["user_id"], received["body"]["network_id"]) == ("u4", "ckw")
    assert received["body"]["facts"]["risk_types"] == ["heat", "wind"] and received["body"]["facts"]["threshold"] == "WARNING"


def test_dead_letter_and_retry_from_the_ui(grid, sessions, nudging):
    config = AlertConfig(enabled=True, max_attempts=2)
    nudging.faults(error_rate=1.0)
    with Channels(NudgingClient(nudging.url, policy=FAST)) as channels:
        first = dispatch_for_event(run_event(config), sessions=sessions, channels=channels, config=config,
                                   published_root=grid.published)
        assert first.reports.failed == 3
        second = dispatch_for_event(run_event(config), sessions=sessions, channels=channels, config=config,
                                    published_root=grid.published)
        assert second.reports.dead_lettered == 3
        with sessions.begin() as session:
            dead = ledger.dead_letters(session, event_type="grid_risk_report")
            assert len(dead) == 3 and all("HTTP 5" in d.last_error for d in dead)
            ledger.requeue(session, dead[0].key)
        nudging.faults()
        assert retry_due(sessions, channels, max_attempts=2).as_dict() == \
            {"sent": 1, "skipped": 0, "failed": 0, "dead_lettered": 0}
    assert [d["user_id"] for d in nudging.deliveries()] == [dead[0].recipient_key]


KILLED_CHILD = r"""
import json, sys, time
from pathlib import Path
from grid_platform.alerts import delivery
from grid_platform.alerts.config import AlertConfig
from grid_platform.alerts.dispatch import dispatch_network
from grid_platform.alerts.nudging import NudgingClient, RetryPolicy
from grid_platform.store.db import make_engine, session_factory

args = json.loads(sys.argv[1])

def sent_but_not_recorded(sessions, key, result, *, max_attempts):
    print("SENT", key, result.outcome, flush=True)
    time.sleep(120)  # killed here: the answer is never written to the ledger

delivery.record = sent_but_not_recorded
sessions = session_factory(make_engine(args["db"]))
channels = delivery.Channels(NudgingClient(args["nudging"], policy=RetryPolicy(timeout_s=5, max_tries=1)))
dispatch_network(args["network"], args["dates"], period=args["period"], sessions=sessions, channels=channels,
                 config=AlertConfig(enabled=True, lease_s=args["lease_s"]), published_root=Path(args["published"]))
"""


def _send_then_sigkill(db_url: str, grid: Grid, nudging_url: str, network: str) -> str:
    """Run dispatch in a child process and SIGKILL it once it has sent, before it records."""
    args = {"db": db_url, "nudging": nudging_url, "network": network, "dates": [D0, D1, D2], "period": D0,
            "lease_s": 0.5, "published": str(grid.published)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, json.dumps(args)], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the child never sent"
        line = child.stdout.readline().decode()
        assert line.startswith("SENT "), (line, child.stderr.read().decode() if child.poll() is not None else "")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    return line.split()[1]


@pytest.mark.slow
def test_exactly_one_report_despite_faults_timeouts_and_a_killed_sender(grid, sessions, sqlite_url, nudging):
    # More inboxes, so that faults hit many groups.
    with sessions.begin() as session:
        for i in range(4):
            _rule(session, f"x{i}", "ckw", ["wind"], "ALERT", f"team{i}@ckw.ch")
            _rule(session, f"y{i}", "ewl", ["heat"], "WARNING", f"team{i}@ewl.ch")
    expected = ({("ckw", OPS), ("ckw", "u4"), ("ewl", OPS)}
                | {("ckw", synthetic_user_id([f"team{i}@ckw.ch"])) for i in range(4)}
                | {("ewl", synthetic_user_id([f"team{i}@ewl.ch"])) for i in range(4)})

    # 1. A dispatcher delivers its first report and dies before recording it.
    killed_key = _send_then_sigkill(sqlite_url, grid, nudging.url, "ckw")
    assert len(nudging.deliveries()) == 1
    with sessions.begin() as session:
        row = ledger.get_delivery(session, killed_key)
        assert (row.status, row.attempts) == ("pending", 1)
    time.sleep(0.6)  # its lease runs out

    # 2. Reruns against a stand-in failing half of the requests and hanging on others.
    nudging.faults(error_rate=0.5, hang_rate=0.2, hang_s=2, seed=11)
    config = AlertConfig(enabled=True, max_attempts=50, lease_s=30)
    policy = RetryPolicy(timeout_s=0.3, max_tries=3, backoff_s=0.01, backoff_max_s=0.05)
    rounds = []
    with Channels(NudgingClient(nudging.url, policy=policy)) as channels:
        for _ in range(15):
            summary = dispatch_for_event(run_event(config), sessions=sessions, channels=channels, config=config,
                                         published_root=grid.published)
            rounds.append(summary.reports.as_dict())
            if summary.reports.failed == 0:
                break
    assert rounds[-1]["failed"] == 0 and rounds[-1]["dead_lettered"] == 0, rounds
    outcomes = nudging.stats()["by_outcome"]
    assert outcomes.get("fault_5xx", 0) > 0 and outcomes.get("fault_hang", 0) > 0, outcomes

    # 3. Every group got exactly one report; the killed send was replayed, not delivered again.
    delivered = [(d["community_id"], d["user_id"]) for d in nudging.deliveries()]
    assert sorted(delivered) == sorted(expected)
    with sessions.begin() as session:
        rows = ledger.deliveries(session)
        assert {r.status for r in rows} <= {"sent", "duplicate"} and len(rows) == len(expected)
        assert ledger.get_delivery(session, killed_key).attempts >= 2
