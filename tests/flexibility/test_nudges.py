"""Reminders, the in-window sweep, opportunity nudges, settled nudges (flexibility.md §5) through
the real delivery ledger and a nudging receiver on a free port; gamification scoring (§7); the
meter stand-in's faults against the client's retries.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from flex_fixtures import COMMUNITY, TZ

from grid_platform.alerts.delivery import Channels
from grid_platform.alerts.nudging import NudgingClient, RetryPolicy
from grid_platform.flexibility import gamification as gm
from grid_platform.flexibility import nudges
from grid_platform.flexibility import windows as fw
from grid_platform.flexibility.meters import MeterClient, MeterDataError
from grid_platform.flexibility.notify import Notifier, settle_and_notify, sweep_reminders
from grid_platform.flexibility.participants import (
    ParticipantRegistry,
    community_exchange,
    device_consumption,
    local_day_bounds,
)
from grid_platform.standins.faults import FaultConfig
from grid_platform.standins.meters import create_app as meters_app
from grid_platform.standins.server import running
from grid_platform.store import dispatch
from grid_platform.store import flexibility as store

T0 = datetime(2026, 6, 10, 12, tzinfo=UTC)


class Receiver:
    """Nudging-tool double: records POSTs; answers ``status`` (e.g. 500 to make sends fail)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.status = 200
        self.app = FastAPI()

        @self.app.post("/admin/{kind}")
        async def receive(kind: str, request: Request) -> JSONResponse:
            self.calls.append({"path": kind, "body": json.loads(await request.body())})
            return JSONResponse({"ok": self.status < 300}, status_code=self.status)


@pytest.fixture
def receiver():
    r = Receiver()
    with running(r.app) as url:
        r.url = url
        yield r


@pytest.fixture
def notifier(sessions, receiver) -> Notifier:
    return Notifier(sessions, Channels(nudging=NudgingClient(receiver.url, policy=RetryPolicy(max_tries=1))))


def commitment(**kw) -> SimpleNamespace:
    values = {"id": "c-1", "user_id": "u1", "suggestion_id": "w1", "community_id": COMMUNITY, "period_start": T0,
              "period_end": T0 + timedelta(hours=2, minutes=15), "reward_points_estimated": 12}
    return SimpleNamespace(**{**values, **kw})


def test_accept_reminder_event():
    c = commitment()
    scheduled = nudges.accept_reminder(c, T0 - timedelta(hours=2), timedelta(minutes=30))
    assert scheduled.channel == "scheduled" and scheduled.trigger_at == T0 - timedelta(minutes=30)
    assert scheduled.body() == {
        "event_type": "flexibility_reminder", "user_id": "u1", "community_id": COMMUNITY,
        "external_key": "flexibility-accept:u1:w1", "trigger_at": "2026-06-10T11:30:00+00:00",
        "facts": {"facts_version": "1.0", "scenario": "flexibility_reminder", "commitment_id": "c-1",
                  "suggestion_id": "w1", "window_start": "12:00", "window_end": "14:15",
                  "reward_points_estimated": "12", "period": "2026-06-10"}}
    at_once = nudges.accept_reminder(c, T0 - timedelta(minutes=30), timedelta(minutes=30))  # trigger == now
    assert at_once.channel == "ingest" and "trigger_at" not in at_once.body()
    assert nudges.accept_reminder(c, T0, timedelta(minutes=15)).channel == "ingest"
    settled = nudges.settled_event(c, actual_kwh=1.2345, reward_points_actual=12)
    assert settled.facts == {"facts_version": "1.0", "scenario": "commitment_settled", "commitment_id": "c-1",
                             "actual_kwh": "1.234", "reward_points_actual": "12", "period": "2026-06-10"}
    assert all(isinstance(v, str) for v in settled.facts.values())


def test_sweep_stamps_then_sends_at_most_once(sessions, notifier, receiver):
    with sessions.begin() as session:
        ok = store.create_commitment(session, user_id="u1", suggestion_id="a", community_id=COMMUNITY,
                                     period_start=T0, period_end=T0 + timedelta(hours=2))
        store.create_commitment(session, user_id="u2", suggestion_id="b", community_id=COMMUNITY,
                                period_start=T0, period_end=T0 + timedelta(hours=2))
    receiver.status = 500
    first = sweep_reminders(sessions, notifier, T0 + timedelta(minutes=5))
    assert first == {"claimed": 2, "dead_lettered": 2}  # failed sends are parked, not retried
    receiver.status = 200
    assert sweep_reminders(sessions, notifier, T0 + timedelta(minutes=10)) == {"claimed": 0}
    assert len(receiver.calls) == 2
    with sessions() as session:
        assert store.get_commitment(session, ok.id).reminded_at == T0 + timedelta(minutes=5)
        assert len(dispatch.dead_letters(session, event_type="flexibility_reminder")) == 2
        assert dispatch.due_for_retry(session, event_type="flexibility_reminder") == []


def test_opportunity_for_every_community_with_paging(notifier, receiver):
    registry = ParticipantRegistry.demo({"rec-a": 7, "rec-b": 5, "rec-c": 3}, 11)
    now = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)
    hours = pd.date_range(now, periods=24, freq="h")
    forecasts = {
        "rec-a": pd.DataFrame({"datetime": hours, "prediction": np.where(hours.hour.isin([8, 9, 14]), 2.0, 0.0)}),
        "rec-b": pd.DataFrame({"datetime": hours, "prediction": np.where(hours.hour == 11, 0.75, 0.0)}),
        "rec-c": pd.DataFrame({"datetime": hours, "prediction": 0.0}),  # no window: nobody nudged
    }
    events = nudges.opportunity_events(registry.communities, registry.members,
                                       lambda c: fw.forecast_windows(forecasts[c], now, c, TZ), page_size=2)
    recipients = {c: sorted({p.recipient for p in registry.all_members(c)}) for c in ("rec-a", "rec-b")}
    assert sorted(e.user_id for e in events if e.community_id == "rec-a") == recipients["rec-a"]
    assert sorted(e.user_id for e in events if e.community_id == "rec-b") == recipients["rec-b"]
    first_a = next(e for e in events if e.community_id == "rec-a")
    assert first_a.facts == {"facts_version": "1.0", "scenario": "flexibility_opportunity", "window_start": "08:00",
                             "window_end": "10:00", "estimated_kwh": "4", "reward_points": "40",
                             "period": "2026-06-10"}
    for event in events:
        notifier.send(event)
    for event in events:  # the same day again: de-duplicated per user by the ledger
        notifier.send(event)
    assert len(receiver.calls) == len(events) == len(recipients["rec-a"]) + len(recipients["rec-b"])


def test_settled_nudges_once_even_after_a_crash(sessions, notifier, receiver, monkeypatch):
    day = T0.date()
    with sessions.begin() as session:
        ids = [store.create_commitment(session, user_id=f"u{i}", suggestion_id="w", community_id=COMMUNITY,
                                       device_id="m", period_start=T0, period_end=T0 + timedelta(hours=1)).id
               for i in range(3)]
    readings = pd.DataFrame({"ts": [T0], "device_id": ["m"], "consumption_kwh": [0.35]})
    real = Notifier.settled
    monkeypatch.setattr(Notifier, "settled", lambda self, rows: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        settle_and_notify(sessions, notifier, day, readings, now=T0 + timedelta(days=1))
    monkeypatch.setattr(Notifier, "settled", real)
    report, counts = settle_and_notify(sessions, notifier, day, readings, now=T0 + timedelta(days=1))
    assert report.settled == [] and counts == {"sent": 3}  # settled before, notified now
    assert settle_and_notify(sessions, notifier, day, readings)[1] == {"skipped": 3}
    facts = sorted(c["body"]["facts"]["commitment_id"] for c in receiver.calls)
    assert facts == sorted(str(i) for i in ids)
    assert {c["body"]["facts"]["reward_points_actual"] for c in receiver.calls} == {"4"}


# --- gamification ------------------------------------------------------------------------------


def test_level_badges_streak_and_season():
    assert [gm.level(p) for p in (0, 99, 100, 250)] == [(1, 100), (1, 100), (2, 200), (3, 300)]
    assert gm.badges(1, 10, 0) == ["first-shift"]
    assert gm.badges(5, 500, 3) == ["first-shift", "peak-saver", "solar-champion", "streak-3"]
    days = pd.DataFrame({"user_id": ["a"] * 4 + ["b"], "day": [date(2026, 6, d) for d in (7, 8, 9, 10, 10)]})
    assert gm.streak_levels(days, date(2026, 6, 10)).to_dict() == {"a": 4, "b": 1}
    assert gm.longest_streak([date(2026, 6, d) for d in (1, 2, 4, 5, 6)]) == 3
    assert gm.season_bounds(date(2026, 5, 17)) == (date(2026, 4, 1), date(2026, 6, 30))
    assert gm.season_bounds(date(2026, 12, 31), 6) == (date(2026, 7, 1), date(2026, 12, 31))
    assert gm.effort_multiplier(np.array([0.5, 0.75, 1.0, 1.3, 1.5, np.inf])).tolist() == [0.25, 0.5, 1.0, 1.5, 2.0,
                                                                                         2.0]


def test_scoring_a_day_of_the_demo_community(registry):
    members_list = [p for p in registry.all_members(COMMUNITY) if p.device_id][:40]
    day = date(2026, 6, 15)
    start, end = local_day_bounds(day, TZ)
    consumption = device_consumption(members_list, start, end, TZ)
    history = device_consumption(members_list, start - timedelta(days=30), start, TZ)
    community = community_exchange(registry.all_members(COMMUNITY), start, end, TZ, "15min")
    members = pd.DataFrame({"device_id": [p.device_id for p in members_list],
                            "user_id": [p.recipient for p in members_list]})
    window = (start + timedelta(hours=10), start + timedelta(hours=13))
    settled = pd.DataFrame({"commitment_id": ["c1", "c2"], "user_id": members["user_id"][:2],
                            "device_id": members["device_id"][:2], "period_start": [window[0]] * 2,
                            "period_end": [window[1]] * 2, "reward_points_estimated": [5, 0]})
    # Make the first member really shift: double its consumption in the window.
    inside = (consumption["device_id"] == members["device_id"][0]) & (consumption["ts"] >= window[0]) \
        & (consumption["ts"] < window[1])
    consumption.loc[inside, "consumption_kwh"] *= 2
    previous = pd.DataFrame({"user_id": members["user_id"], "day": day - timedelta(days=1), "base_points": 20.0,
                             "bonus_points": 0.0, "daily_points": 20.0})
    actions = pd.DataFrame({"user_id": [members["user_id"][0]] * 2, "day": [day - timedelta(days=1), day]})
    daily, bonus = gm.score_day(day, TZ, members=members, consumption=consumption, history=history,
                                community=community, settled=settled, previous_daily=previous, action_days=actions)
    assert len(daily) == len(members) and (daily["base_points"] > 0).all()
    first = bonus.set_index("commitment_id").loc["c1"]
    assert first["shifted_kwh"] > 0.05
    cap = 2 * 20.0 / gm.AVERAGE_DAYS  # the 30-day average of 20 points on one day
    assert first["bonus_points"] == pytest.approx(cap, abs=1e-3)  # a big shift hits the cap (3 dp)
    assert bonus.set_index("commitment_id").loc["c2", "bonus_points"] == 0.0  # no shift, no bonus
    assert (daily["daily_points"] == (daily["base_points"] + daily["bonus_points"]).round(2)).all()
    budgeted = gm.daily_points(day, gm.interval_points(consumption, community, gm.device_baseline(history, TZ), TZ),
                               bonus, members, budget=10.0)
    assert budgeted["daily_points"].sum() == pytest.approx(10.0, abs=0.05)
    board = gm.leaderboard(pd.concat([previous, daily]), members["user_id"], gm.season_bounds(day))
    assert board["season_rank"].min() == 1 and (board["total_members"] == len(members)).all()
    assert board["season_points"].is_monotonic_decreasing


def test_interval_kinds():
    ts = pd.date_range("2026-06-15T10:00Z", periods=3, freq="15min")
    consumption = pd.DataFrame({"ts": list(ts) * 2, "device_id": ["a"] * 3 + ["b"] * 3,
                                "consumption_kwh": [1.0, 1.0, 1.0, 3.0, 3.0, 3.0]})
    community = pd.DataFrame({"ts": ts, "production_kwh": [10.0, 2.0, 0.0], "consumption_kwh": [4.0, 4.0, 4.0]})
    baseline = pd.DataFrame({"device_id": ["a", "b"] * 96, "slot": np.repeat(np.arange(96), 2), "baseline_kwh": 1.0})
    points = gm.interval_points(consumption, community, baseline, TZ).set_index(["device_id", "ts"])
    assert points.loc[("a", ts[0]), "kind"] == "surplus"
    assert points.loc[("a", ts[0]), "settlement_points"] == pytest.approx(np.log(2) * 1.0 * 10)
    assert points.loc[("b", ts[0]), "settlement_points"] == pytest.approx(np.log(4) * 2.0 * 10)
    assert points.loc[("a", ts[1]), "settlement_points"] == pytest.approx(2.0 * 10 * 0.25)  # pool by share
    assert points.loc[("b", ts[1]), "settlement_points"] == pytest.approx(2.0 * 10 * 0.75)
    assert points.loc[("a", ts[2]), "kind"] == "none" and points.loc[("a", ts[2]), "settlement_points"] == 0


# --- meter stand-in and client -----------------------------------------------------------------


def test_meter_standin_contract_and_client_retries(registry):
    member = next(p for p in registry.all_members(COMMUNITY) if p.device_id)
    app = meters_app(registry, tz=TZ, faults=FaultConfig(error_rate=0.5, seed=4))
    with running(app) as url:
        with MeterClient(url, backoff_s=0.01, max_tries=8) as client:
            frame = client.device_consumption(member.device_id, date(2026, 3, 29), date(2026, 3, 29), "1h")
            assert len(frame) == 23 and frame["ts"].iloc[0] == pd.Timestamp("2026-03-28T23:00Z")
            exchange = client.community_exchange(COMMUNITY, date(2026, 10, 25), date(2026, 10, 25))
            assert len(exchange) == 25
            bulk = client.community_consumption(COMMUNITY, date(2026, 6, 1), date(2026, 6, 1), "1h")
            assert bulk["device_id"].nunique() == sum(1 for p in registry.all_members(COMMUNITY) if p.device_id)
        stats = httpx.get(f"{url}/_standin/stats").json()
        assert stats["by_outcome"].get("fault_5xx", 0) > 0
        httpx.put(f"{url}/_standin/faults", json={})
        assert httpx.get(f"{url}/v1/meters/nope/consumption", params={"date": "2026-06-01"}).status_code == 404
        assert httpx.get(f"{url}/v1/meters/{member.device_id}/consumption",
                         params={"date": "2026-06-01", "end_date": "2026-07-15"}).status_code == 400
        with MeterClient(url, backoff_s=0.01) as client:
            long = client.device_consumption(member.device_id, date(2026, 5, 1), date(2026, 6, 30), "1h")
            assert len(long) == 61 * 24  # split into <= 31-day requests
            with pytest.raises(MeterDataError):
                client.device_consumption("nope", date(2026, 6, 1), date(2026, 6, 1))
        participant = next(p for p in registry.all_members(COMMUNITY) if p.device_id is None)
        body = httpx.get(f"{url}/v1/participants/{participant.participant_id}/consumption",
                         params={"date": "2026-06-01"}).json()
        assert body["device_id"] is None and len(body["readings"]) == 96
