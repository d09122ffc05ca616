"""The flexibility router behind the read API's authentication gate, with tokens minted by
``grid_platform.api.identity.mint_token``: suggestions, respond (MQTT on the real Mosquitto at
127.0.0.1:1883, reminders to a nudging receiver on a free port), commitments CRUD, 404 for
other users' rows, 409s, pagination, policy denials, gamification.
"""

from __future__ import annotations

import json
import threading
import uuid
import warnings
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from flex_fixtures import COMMUNITY, TZ
from paho.mqtt.enums import CallbackAPIVersion

from grid_platform.alerts.delivery import Channels
from grid_platform.alerts.nudging import NudgingClient, RetryPolicy
from grid_platform.api.app import AuthGate
from grid_platform.api.config import ApiConfig
from grid_platform.api.flexibility_routes import FlexibilityDeps, flexibility_router
from grid_platform.api.identity import TokenVerifier, mint_token
from grid_platform.flexibility import gamification, publications
from grid_platform.flexibility import windows as fw
from grid_platform.flexibility.access import FlexibilityPolicy
from grid_platform.flexibility.config import FlexibilityConfig
from grid_platform.flexibility.notify import Notifier
from grid_platform.settings import PROJECT_ROOT
from grid_platform.standins.server import running
from grid_platform.store import dispatch

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient

ZRH = ZoneInfo(TZ)
SECRET = "flexibility-tests-secret-0123456789abcdef"
CONFIG = ApiConfig(jwt_secret=SECRET)
MQTT_URL = "mqtt://127.0.0.1:1883"
TODAY = date(2026, 6, 15)
NOW = datetime(2026, 6, 15, 9, 30, tzinfo=ZRH).astimezone(UTC)
USER_SCOPES = "flexibility.read flexibility.write"


def local(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZRH).astimezone(UTC)


def user(sub: str, scope: str = USER_SCOPES) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(sub, scopes=scope, config=CONFIG)}


def service(scope: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token("svc-flex", scopes=scope, config=CONFIG,
                                                    preferred_username="service-account-flex")}


class Receiver:
    """A nudging-tool double on a real port: records every POST (path, headers, body)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/admin/{kind}")
        async def receive(kind: str, request: Request) -> dict:
            self.calls.append({"path": kind, "key": request.headers.get("idempotency-key"),
                               "body": json.loads(await request.body())})
            return {"ok": True}


@pytest.fixture
def receiver():
    r = Receiver()
    with running(r.app) as url:
        r.url = url
        yield r


@pytest.fixture
def api(tmp_path, sessions, registry, receiver):
    """(client, deps, prefix): an app with the router; MQTT topics under a per-test prefix."""
    root = tmp_path / "published"
    prefix = f"flextest-{uuid.uuid4().hex[:8]}"
    notifier = Notifier(sessions, Channels(nudging=NudgingClient(receiver.url, policy=RetryPolicy(max_tries=1))),
                        mqtt_url=MQTT_URL, topic_prefix=prefix, notify_committed=True)
    deps = FlexibilityDeps(
        sessions=sessions, policy=FlexibilityPolicy(PROJECT_ROOT / "policies"), directory=registry,
        windows=lambda community, days: publications.read_windows(root, community, days),
        scoring=lambda community: publications.read_scoring(root, community),
        notifier=notifier, config=FlexibilityConfig(local_timezone=TZ), clock=lambda: NOW)
    app = FastAPI()
    app.include_router(flexibility_router(deps))
    app.add_middleware(AuthGate, verifier=TokenVerifier(CONFIG), header_name=CONFIG.jwt_header_name)
    with TestClient(app) as client:
        yield client, deps, root, prefix


@pytest.fixture
def member(registry):
    return next(p for p in registry.all_members(COMMUNITY) if p.user_id and p.device_id)


def publish_windows(root, member) -> pd.DataFrame:
    rows = []
    for day, start, end, kwh in ((TODAY, 12, 14, 30.0), (TODAY, 14, 17, 20.0), (TODAY + timedelta(days=1), 10, 13, 50.0)):
        s, e = local(day, start), local(day, end)
        rows.append(fw._row("surplus", COMMUNITY, None, s, e, TZ, community_kwh=kwh))
        rows.append(fw._row("surplus", COMMUNITY, member.device_id, s, e, TZ, community_kwh=kwh,
                            estimated_kwh=kwh / 100, reward=round(kwh / 10), confidence=0.6))
    windows = fw.frame(rows)
    for day in (TODAY, TODAY + timedelta(days=1)):
        publications.publish_windows(root, COMMUNITY, day, windows)
    return windows


def test_authentication_and_policy(api, member):
    client, *_ = api
    assert client.get("/api/suggestions").status_code == 401
    assert client.get("/api/commitments", headers=user(member.user_id, scope="")).json()["detail"] == \
        "missing flexibility scope"
    assert client.get("/api/commitments/pending", headers=user(member.user_id)).json()["detail"] == \
        "service account required"
    assert client.get("/api/commitments/export?created_after=2026-01-01T00:00:00Z",
                      headers=service("flexibility.read")).status_code == 403
    assert client.get("/api/commitments/pending", headers=service("flexibility.read")).status_code == 200
    assert client.post("/api/commitments", headers=service("flexibility.read"), json={
        "user_id": "x", "suggestion_id": "s", "period_start": NOW.isoformat(),
        "period_end": (NOW + timedelta(hours=1)).isoformat()}).json()["detail"] == "missing flexibility scope"


@pytest.mark.parametrize(("module", "reason"), [
    ("package celine.flexibility.access\nthis is not rego\n", "no-policy-engine"),
    # Loads, but two complete definitions conflict at evaluation: an evaluation error.
    (("package celine.flexibility.access\nimport rego.v1\nallow := true\n"
      "reason := \"a\" if input.action.name == \"read\"\nreason := \"b\" if input.action.name == \"read\"\n"),
     "policy-error"),
])
def test_policy_errors_deny(api, member, tmp_path, module, reason):
    client, deps, *_ = api
    broken = tmp_path / "policies"
    broken.mkdir()
    (broken / "flexibility.rego").write_text(module)
    deps.policy = FlexibilityPolicy(broken)
    answer = client.get("/api/commitments", headers=user(member.user_id))
    assert answer.status_code == 403
    assert answer.json()["detail"] == reason


def test_suggestions_from_published_windows(api, member):
    client, _, root, _ = api
    assert client.get("/api/suggestions", headers=user(member.user_id)).json() == []  # nothing published
    publish_windows(root, member)
    items = client.get("/api/suggestions", headers=user(member.user_id)).json()
    assert [i["to_time"] for i in items] == ["10:00", "12:00", "14:00"]
    assert items[0]["from_period"] == "evening" and items[0]["clock_range"] == "17:00\u201321:00"
    assert items[1]["clock_range"] == "12:00\u201314:00" and items[1]["reward_points"] == 3
    assert client.get("/api/suggestions", headers=user("stranger")).json() == []  # no membership
    (root / publications.WINDOWS_DATASET / f"{COMMUNITY}@{TODAY}" / "current" / "windows.parquet").write_bytes(b"x")
    assert client.get("/api/suggestions", headers=user(member.user_id)).json() == []  # broken read -> []


def test_accept_publishes_mqtt_and_schedules_the_reminder(api, member, receiver):
    client, _, root, prefix = api
    windows = publish_windows(root, member)
    target = windows[windows["device_id"].isna()].iloc[1]  # today 14:00-17:00 local
    topic = f"{prefix}/flexibility/committed/{member.user_id}"
    got: list[dict] = []
    subscribed, arrived = threading.Event(), threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flex-test-{uuid.uuid4().hex[:8]}")
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: (got.append({"qos": m.qos, **json.loads(m.payload)}), arrived.set())
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5)
        body = {"response": "accepted", "reward_points": 4, "period_start": target["window_start"].isoformat(),
                "period_end": target["window_end"].isoformat()}
        answer = client.post(f"/api/suggestions/{target['window_id']}/respond", headers=user(member.user_id),
                             json=body)
        assert answer.status_code == 200 and answer.json()["status"] == "committed"
        assert arrived.wait(10)
    finally:
        sub.loop_stop()
        sub.disconnect()
    commitment_id = answer.json()["commitment_id"]
    assert got == [{"qos": 1, "user_id": member.user_id, "community_id": COMMUNITY, "commitment_id": commitment_id,
                    "device_id": member.device_id, "window_start": "2026-06-15T12:00:00+00:00",
                    "window_end": "2026-06-15T15:00:00+00:00", "reward_points_estimated": 4}]
    scheduled = [c for c in receiver.calls if c["path"] == "scheduled-events"]
    assert len(scheduled) == 1
    assert scheduled[0]["body"]["external_key"] == f"flexibility-accept:{member.user_id}:{target['window_id']}"
    assert scheduled[0]["body"]["trigger_at"] == "2026-06-15T11:30:00+00:00"  # window start − 30 min
    assert scheduled[0]["body"]["facts"] == {
        "facts_version": "1.0", "scenario": "flexibility_reminder", "commitment_id": commitment_id,
        "suggestion_id": target["window_id"], "window_start": "12:00", "window_end": "15:00",
        "reward_points_estimated": "4", "period": "2026-06-15"}
    assert scheduled[0]["key"] == dispatch.idempotency_key(
        f"flexibility-accept:{member.user_id}:{target['window_id']}|{commitment_id}")
    committed = [c for c in receiver.calls if c["body"]["event_type"] == "flexibility_committed"]
    assert len(committed) == 1 and committed[0]["path"] == "ingest-event"
    # Duplicate accept: the same row, nothing inserted, nothing published again.
    again = client.post(f"/api/suggestions/{target['window_id']}/respond", headers=user(member.user_id), json=body)
    assert again.json()["commitment_id"] == commitment_id and len(receiver.calls) == 2
    # The held window is no longer suggested.
    ids = [i["id"] for i in client.get("/api/suggestions", headers=user(member.user_id)).json()]
    assert target["window_id"] not in ids


def test_accept_inside_the_lead_sends_at_once_and_decline(api, member, receiver):
    client, *_ = api
    answer = client.post("/api/suggestions/w-now/respond", headers=user(member.user_id),
                         json={"response": "accepted", "period_start": "not a date"})
    assert answer.json()["reward_points_estimated"] == 10  # default reward
    row = client.get(f"/api/commitments/{answer.json()['commitment_id']}", headers=user(member.user_id)).json()
    assert (row["period_start"], row["period_end"]) == (NOW.isoformat(), (NOW + timedelta(hours=1)).isoformat())
    assert [c["path"] for c in receiver.calls if c["body"]["event_type"] == "flexibility_reminder"] == ["ingest-event"]
    declined = client.post("/api/suggestions/w-declined/respond", headers=user(member.user_id),
                           json={"response": "declined", "reward_points": 7})
    assert declined.json() == {"commitment_id": None, "status": "declined", "reward_points_estimated": 0}
    rejected = client.get("/api/commitments?status=rejected", headers=user(member.user_id)).json()["items"]
    assert [(r["suggestion_id"], r["community_id"], r["device_id"], r["reward_points_estimated"])
            for r in rejected] == [("w-declined", None, None, 7)]
    assert len([c for c in receiver.calls if "w-declined" in json.dumps(c["body"])]) == 0


def test_commitments_crud_isolation_and_conflicts(api):
    client, *_ = api
    body = {"suggestion_id": "s1", "period_start": "2026-06-15T12:00:00Z", "period_end": "2026-06-15T14:00:00Z",
            "user_id": "someone-else", "reward_points_estimated": 5}
    created = client.post("/api/commitments", headers=user("alice"), json=body)
    assert created.status_code == 201 and created.json()["user_id"] == "alice"  # forced to sub
    cid = created.json()["id"]
    assert client.post("/api/commitments", headers=user("alice"), json=body).status_code == 409
    assert client.post("/api/commitments", headers=service("flexibility.write"),
                       json={**body, "user_id": None}).status_code == 422
    by_service = client.post("/api/commitments", headers=service("flexibility.write"), json={**body, "user_id": "bob"})
    assert by_service.status_code == 201 and by_service.json()["user_id"] == "bob"
    assert client.get(f"/api/commitments/{cid}", headers=user("bob")).status_code == 404
    assert client.delete(f"/api/commitments/{cid}", headers=user("bob")).status_code == 404
    assert client.patch(f"/api/commitments/{cid}/settle", headers=user("alice"),
                        json={"reward_points_actual": 1}).status_code == 403
    assert client.delete(f"/api/commitments/{cid}", headers=user("alice")).status_code == 204
    assert client.delete(f"/api/commitments/{cid}", headers=user("alice")).status_code == 409
    assert client.patch(f"/api/commitments/{cid}/settle", headers=service("flexibility.read"),
                        json={"reward_points_actual": 1}).status_code == 409
    bob = by_service.json()["id"]
    settled = client.patch(f"/api/commitments/{bob}/settle", headers=service("flexibility.read"),
                           json={"reward_points_actual": 3, "actual_kwh": 0.31})
    assert settled.status_code == 200 and settled.json()["status"] == "settled"
    assert settled.json()["actual_kwh"] == 0.31 and settled.json()["settled_at"] == NOW.isoformat()
    assert client.patch(f"/api/commitments/{bob}/settle", headers=service("flexibility.read"),
                        json={"reward_points_actual": 9}).status_code == 409
    assert client.patch(f"/api/commitments/{uuid.uuid4()}/settle", headers=service("flexibility.read"),
                        json={"reward_points_actual": 9}).status_code == 404
    # A cancelled suggestion is released: taken again, a new row. A settled one stays held: its
    # window is paid and cannot be committed (and paid) a second time.
    again = client.post("/api/commitments", headers=user("alice"), json=body)
    assert again.status_code == 201 and again.json()["id"] != cid
    assert client.post("/api/commitments", headers=service("flexibility.write"),
                       json={**body, "user_id": "bob"}).status_code == 409
    retaken = client.post("/api/suggestions/s1/respond", headers=user("bob"), json={"response": "accepted"})
    assert retaken.status_code == 409 and bob in retaken.json()["detail"]


def test_listing_pagination_pending_and_export(api):
    client, *_ = api
    for i in range(5):
        client.post("/api/commitments", headers=user("carol"), json={
            "suggestion_id": f"s{i}", "period_start": (NOW - timedelta(minutes=10)).isoformat(),
            "period_end": (NOW + timedelta(hours=i + 1)).isoformat()})
    page = client.get("/api/commitments?limit=2&offset=1", headers=user("carol")).json()
    assert page["total"] == 5 and len(page["items"]) == 2
    assert client.get("/api/commitments?limit=201", headers=user("carol")).status_code == 422
    assert client.get("/api/commitments?user_id=carol", headers=user("dave")).json() == {"items": [], "total": 0}
    assert client.get("/api/commitments", headers=service("flexibility.read")).json() == {"items": [], "total": 0}
    assert client.get("/api/commitments?user_id=carol", headers=service("flexibility.read")).json()["total"] == 5
    pending = client.get("/api/commitments/pending", headers=service("flexibility.read")).json()
    assert len(pending) == 5 and all(p["reminded_at"] == NOW.isoformat() for p in pending)
    assert client.get("/api/commitments/pending", headers=service("flexibility.read")).json() == []
    exported = client.get("/api/commitments/export", params={"created_after": "2000-01-01T00:00:00Z"},
                          headers=service("flexibility.commitments.export")).json()
    assert sorted(e["suggestion_id"] for e in exported) == [f"s{i}" for i in range(5)]  # same committed_at


def test_gamification_endpoints(api, member, registry):
    client, _, root, _ = api
    others = [p.recipient for p in registry.all_members(COMMUNITY)[:6] if p.recipient != member.user_id][:5]
    daily = pd.DataFrame({"user_id": [member.user_id] * 3 + others,
                          "day": [TODAY - timedelta(days=k) for k in range(3)] + [TODAY] * len(others),
                          "base_points": [40.0, 50.0, 30.0] + [10.0] * len(others),
                          "bonus_points": [5.0, 0.0, 0.0] + [0.0] * len(others)})
    daily["daily_points"] = daily["base_points"] + daily["bonus_points"]
    board = gamification.leaderboard(daily, {member.user_id, *others}, gamification.season_bounds(TODAY))
    publications.publish_scoring(root, COMMUNITY, daily, board)
    body = client.get("/api/gamification", headers=user(member.user_id)).json()
    assert (body["season_points"], body["season_rank"], body["level"], body["next_level_at"]) == (125.0, 1, 2, 200)
    assert body["season_start"] == "2026-04-01" and body["badges"] == []
    history = client.get("/api/gamification/history", headers=user(member.user_id)).json()
    assert [h["daily_points"] for h in history] == [30.0, 50.0, 45.0]
    ranking = client.get("/api/gamification/leaderboard", headers=user(member.user_id)).json()
    assert ranking[0] == {"season_rank": 1, "season_points": 125.0, "is_me": True, "user_id": member.user_id}
    assert all(r["user_id"] is None for r in ranking[1:])
