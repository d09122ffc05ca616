"""Nudging client and signed webhooks against the nudging stand-in and a webhook receiver (real servers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from alerts_fixtures import webhook_receiver
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from grid_platform.alerts.nudging import (
    ClientCredentials,
    NudgingClient,
    RetryPolicy,
    StaticToken,
    WebhookSender,
    signature,
    token_provider_from_env,
    verify_signature,
)
from grid_platform.settings import PROJECT_ROOT
from grid_platform.standins.nudging import create_app
from grid_platform.standins.server import running

FAST = RetryPolicy(timeout_s=2.0, max_tries=3, backoff_s=0.01, backoff_max_s=0.05)


def event(user_id: str = "email-ingest:0123456789abcdef", community_id: str | None = "ckw", period="2026-07-01",
          scenario: str = "grid_risk_report", **facts) -> dict:
    base = {"facts_version": "1.0", "scenario": scenario, "period": period, "threshold": "ALERT",
            "email_recipients": ["ops@ckw.ch"],
            "days": [{"date": period, "vectors": [{"risk_vector": "wind", "units": [], "totals": {},
                                                   "top_lines": [{"line_name": "A"}]}]}]}
    return {"event_type": scenario, "user_id": user_id, "community_id": community_id,
            "timestamp": "2026-07-01T08:05:00Z", "facts": {**base, **facts}}


@pytest.fixture
def client(nudging) -> Iterator[NudgingClient]:
    with NudgingClient(nudging.url, policy=FAST) as c:
        yield c


def test_outcomes(nudging, client):
    sent = client.ingest_event(event(), "key-1")
    assert (sent.outcome, sent.status_code, sent.tries) == ("sent", 200, 1)
    [delivery] = nudging.deliveries()
    assert delivery["idempotency_key"] == "key-1" and delivery["community_id"] == "ckw"
    assert delivery["dedup_key"] == "grid-risk-report-daily:email-ingest:0123456789abcdef:ckw:2026-07-01"
    # Same idempotency key, same body: the first answer again, nothing delivered twice.
    assert client.ingest_event(event(), "key-1").outcome == "sent"
    # Another key, same dedup key: the tool de-duplicates (409) -> duplicate, not failure.
    duplicate = client.ingest_event(event(), "key-2")
    assert (duplicate.outcome, duplicate.status_code, duplicate.done) == ("duplicate", 409, True)
    # Another network is another community: delivered (one inbox watching two networks).
    assert client.ingest_event(event(community_id="ewl"), "key-3").status_code == 200
    no_lines = event(period="2026-07-02")
    no_lines["facts"]["days"][0]["vectors"][0]["top_lines"] = []
    assert (client.ingest_event(no_lines, "key-4").outcome, client.ingest_event(no_lines, "key-4").status_code) \
        == ("sent", 204)
    nudging.control("PUT", "/suppressed", json={"user_ids": ["muted"]})
    assert client.ingest_event(event(user_id="muted"), "key-5").status_code == 202
    assert len(nudging.deliveries()) == 2


def test_rejections_not_retried(nudging, client):
    unknown = client.ingest_event(event(scenario="no_such_scenario"), "k1")
    assert (unknown.outcome, unknown.status_code, unknown.tries) == ("rejected", 400, 1)
    body = event()
    del body["facts"]["threshold"]
    missing = client.ingest_event(body, "k2")
    assert (missing.outcome, missing.status_code, missing.tries) == ("rejected", 422, 1)
    assert "threshold" in missing.detail
    assert client.ingest_event(event(period="2026-07"), "k3").status_code == 422  # not a daily scope
    assert client.ingest_event(event(user_id=""), "k4").status_code == 422  # user_id always sent
    wrong = event()
    wrong["facts"]["scenario"] = "extr_event"
    assert client.ingest_event(wrong, "k5").status_code == 422
    assert client.ingest_event(event(), "k2").status_code == 200  # a refused key may be retried
    assert client.ingest_event(event(period="2026-07-03"), "k2").status_code == 422  # reused with another body
    assert nudging.stats()["requests"] == 7 and len(nudging.deliveries()) == 1


def test_retries_on_5xx_and_429(nudging, client):
    nudging.faults(error_rate=1.0)
    failed = client.ingest_event(event(), "k")
    assert (failed.outcome, failed.tries) == ("failed", 3) and failed.status_code in (500, 502, 503)
    assert nudging.stats()["by_outcome"] == {"fault_5xx": 3}
    nudging.faults(burst_429=2)
    assert client.ingest_event(event(), "k").tries == 3
    nudging.faults(error_rate=0.5, seed=3)
    results = [client.ingest_event(event(period=f"2026-07-{day:02d}"), f"k{day}") for day in range(10, 20)]
    assert sum(r.outcome == "sent" for r in results) >= 6  # P(3 failures in a row) = 1/8 each
    assert len(nudging.deliveries()) == 1 + sum(r.outcome == "sent" for r in results)


def test_timeouts_retried_within_bounds(nudging):
    nudging.faults(hang_rate=1.0, hang_s=5)
    policy = RetryPolicy(timeout_s=0.2, max_tries=3, backoff_s=0.01)
    started = time.monotonic()
    with NudgingClient(nudging.url, policy=policy) as client:
        result = client.ingest_event(event(), "k")
    assert (result.outcome, result.status_code, result.tries) == ("failed", None, 3)
    assert "Timeout" in result.detail and time.monotonic() - started < 3
    assert nudging.deliveries() == []


def test_scheduled_events_upsert(nudging, client):
    reminder = {"event_type": "flexibility_reminder", "user_id": "user-7", "community_id": "rec-1",
                "external_key": "flexibility-accept:user-7:s1", "trigger_at": "2026-07-01T10:30:00+00:00",
                "facts": {"facts_version": "1.0", "scenario": "flexibility_reminder", "window_start": "11:00",
                          "window_end": "12:00", "reward_points_estimated": "12", "period": "2026-07-01"}}
    assert client.schedule_event(reminder, "s-1").status_code == 201
    assert client.schedule_event({**reminder, "trigger_at": "2026-07-01T10:45:00+00:00"}, "s-2").status_code == 200
    assert client.schedule_event({**reminder, "trigger_at": "10:45"}, "s-3").status_code == 422
    scheduled = nudging.control("GET", "/scheduled").json()
    assert scheduled["count"] == 1
    assert nudging.control("POST", "/scheduled/fire", json={"now": "2026-07-01T10:40:00+00:00"}).json() == {"fired": []}
    fired = nudging.control("POST", "/scheduled/fire", json={"now": "2026-07-01T10:45:00+00:00"}).json()
    assert fired == {"fired": [{"external_key": "flexibility-accept:user-7:s1", "answer": 200}]}
    assert [d["source"] for d in nudging.deliveries()] == ["scheduled"]


def test_state_cleared(nudging, client):
    client.ingest_event(event(), "k")
    httpx.delete(nudging.url + "/_standin/deliveries").raise_for_status()
    assert nudging.deliveries() == []
    assert client.ingest_event(event(), "k").status_code == 200  # idempotency and dedup memory gone too


def test_bearer_tokens():
    with running(create_app(token="t0k3n")) as url:
        for token, status in ((None, 401), (StaticToken("wrong"), 401), (StaticToken("t0k3n"), 200),
                              (StaticToken("Bearer t0k3n"), 200)):  # a pasted prefix is not doubled
            with NudgingClient(url, token, policy=FAST) as client:
                assert client.ingest_event(event(), f"key-{status}").status_code == status
        doubled = httpx.post(url + "/admin/ingest-event", json=event(),
                             headers={"Authorization": "Bearer Bearer t0k3n"})
        assert doubled.status_code == 401


def _token_server(tokens: list[str], expires_in: int) -> FastAPI:
    app = FastAPI()
    app.state.requests = []

    @app.post("/token")
    async def token(request: Request) -> Response:
        form = dict(x.split("=", 1) for x in (await request.body()).decode().split("&"))
        app.state.requests.append(form)
        if form.get("client_secret") != "s3cret":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse({"access_token": tokens[min(len(app.state.requests), len(tokens)) - 1],
                             "token_type": "Bearer", "expires_in": expires_in})

    return app


def test_client_credentials_cached_and_refreshed_on_401():
    app = _token_server(["old", "new"], expires_in=3600)
    with running(app) as idp, running(create_app(token="new")) as url:
        provider = ClientCredentials(idp + "/token", "grid-platform", "s3cret")
        with NudgingClient(url, provider, policy=FAST) as client:
            first = client.ingest_event(event(), "k1")  # "old" -> 401 -> fetch again -> "new"
            assert (first.outcome, first.tries) == ("sent", 2)
            assert client.ingest_event(event(period="2026-07-02"), "k2").tries == 1  # cached
        assert len(app.state.requests) == 2
        assert app.state.requests[0] == {"grant_type": "client_credentials", "client_id": "grid-platform",
                                         "client_secret": "s3cret", "scope": "nudging.ingest"}
        with NudgingClient(url, ClientCredentials(idp + "/token", "grid-platform", "bad"), policy=FAST) as client:
            refused = client.ingest_event(event(period="2026-07-03"), "k3")
        assert refused.outcome == "failed" and "token endpoint answered 401" in refused.detail


def test_token_provider_from_env():
    assert token_provider_from_env({}) is None
    assert token_provider_from_env({"NUDGING_TOKEN": "Bearer abc"}).token() == "abc"
    provider = token_provider_from_env({"NUDGING_TOKEN_URL": "http://127.0.0.1:1/token", "NUDGING_CLIENT_ID": "c",
                                        "NUDGING_CLIENT_SECRET": "s", "NUDGING_TOKEN": "ignored"})
    assert isinstance(provider, ClientCredentials) and provider.scope == "nudging.ingest"
    with pytest.raises(ValueError, match="NUDGING_CLIENT_ID"):
        token_provider_from_env({"NUDGING_TOKEN_URL": "http://127.0.0.1:1/token"})


def test_signed_webhook():
    app = webhook_receiver("hook-secret")
    with running(app) as url:
        with WebhookSender("hook-secret", FAST) as sender:
            result = sender.send(url + "/hook", {"event_type": "grid_risk_report", "facts": {"période": "é"}}, "k")
        assert (result.outcome, result.status_code) == ("sent", 204)
        with WebhookSender("other-secret", FAST) as sender:
            refused = sender.send(url + "/hook", {"x": 1}, "k2")
        assert (refused.outcome, refused.status_code, refused.tries) == ("rejected", 401, 1)
    assert [(r["valid"], r["idempotency_key"]) for r in app.state.received] == [(True, "k"), (False, "k2")]
    assert app.state.received[0]["body"]["facts"] == {"période": "é"}
    now = time.time()
    ts = str(int(now))
    good = signature("s", ts, b"{}")
    assert verify_signature("s", b"{}", ts, good, now=now)
    assert not verify_signature("s", b"{ }", ts, good, now=now)  # body tampered
    assert not verify_signature("s", b"{}", ts, good, now=now + 301)  # replayed too late
    assert not verify_signature("s", b"{}", None, good) and not verify_signature("s", b"{}", "x", good)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_standin_runs_as_module():
    port = _free_port()
    env = {**os.environ, "PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "grid_platform.standins.nudging"], cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "stand-in did not start"
                time.sleep(0.2)
        with NudgingClient(f"http://127.0.0.1:{port}", policy=FAST) as client:
            assert client.ingest_event(event(), "k").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
