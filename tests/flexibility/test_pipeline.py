"""The job functions the Dagster wiring calls, end to end over the meter stand-in (HTTP):
windows -> publication -> suggestions, readings -> settlement -> nudges, forecast -> opportunities,
meter data -> scoring -> publication.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from flex_fixtures import TZ

from grid_platform.alerts.delivery import Channels
from grid_platform.alerts.nudging import NudgingClient, RetryPolicy
from grid_platform.ckw.normalise import normalise_prices
from grid_platform.flexibility import pipeline, publications
from grid_platform.flexibility import windows as fw
from grid_platform.flexibility.config import FlexibilityConfig
from grid_platform.flexibility.meters import MeterClient
from grid_platform.flexibility.notify import Notifier
from grid_platform.flexibility.participants import (
    ParticipantRegistry,
    community_exchange,
    device_consumption,
    local_day_bounds,
)
from grid_platform.flexibility.suggestions import build_suggestions
from grid_platform.standins.ckw import prices_payload
from grid_platform.standins.meters import create_app as meters_app
from grid_platform.standins.server import running
from grid_platform.store import flexibility as store

SMALL = "rec-small"
DAY = date(2026, 6, 15)
CONFIG = FlexibilityConfig(local_timezone=TZ, community_id=SMALL, expectation_days=14)


@pytest.fixture(scope="module")
def small() -> ParticipantRegistry:
    return ParticipantRegistry.demo({SMALL: 25, "rec-other": 4}, 9)


@pytest.fixture(scope="module")
def meter(small):
    with running(meters_app(small, tz=TZ)) as url, MeterClient(url) as client:
        yield client


@pytest.fixture
def nudging():
    calls: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/admin/{kind}")
    async def receive(kind: str, request: Request) -> dict:
        calls.append({"path": kind, "body": await request.json()})
        return {}

    with running(app) as url:
        yield url, calls


def test_prices_from_the_warehouse_table():
    """``raw.ckw_prices`` rows as the CKW ingestion writes them (stand-in payload -> normaliser)."""
    now = datetime(2026, 6, 16, 12, tzinfo=UTC)
    payload = prices_payload(now, start_timestamp="2026-06-14T22:00:00Z", end_timestamp="2026-06-16T22:00:00Z")
    rows, _ = normalise_prices(payload, endpoint="prices", tariff_name="home_dynamic", ingested_at=now)
    con = duckdb.connect()
    con.execute("create schema raw")
    con.register("rows", pd.DataFrame(rows))
    con.execute("create table raw.ckw_prices as select * from rows")
    start, end = local_day_bounds(DAY, TZ)
    prices = pipeline.integrated_prices(con, start, end)
    assert len(prices) == 24 and prices.index[0] == pd.Timestamp(start)
    integrated = pd.DataFrame(rows).query("tariff_type == 'integrated'").set_index("slot_start")["value"]
    assert prices.iloc[0] == pytest.approx(float(integrated.loc[pd.Timestamp(start)]))
    assert not fw.price_windows(prices, start, SMALL, None, TZ, 0.3).empty


def test_windows_publication_and_suggestions(meter, small, tmp_path):
    windows = pipeline.windows_for_day(DAY, SMALL, meter, CONFIG)
    members = small.all_members(SMALL)
    start, end = local_day_bounds(DAY, TZ)
    direct = fw.build_flex_windows(DAY, SMALL, TZ, exchange=community_exchange(members, start, end, TZ),
                                   device_history=device_consumption(members, start - timedelta(days=14), start,
                                                                     TZ, "1h"),
                                   prices=None, flexible_share=CONFIG.flexible_share)
    pd.testing.assert_frame_equal(windows, direct)  # the HTTP path gives the same partition
    assert (windows["ts_date"] == DAY).all() and not windows.empty
    first = publications.publish_windows(tmp_path, SMALL, DAY, windows)
    assert publications.publish_windows(tmp_path, SMALL, DAY, windows).version == first.version  # same content
    read = publications.read_windows(tmp_path, SMALL, [DAY, DAY + timedelta(days=1)])
    member = next(p for p in members if p.device_id and p.user_id)
    now = datetime(2026, 6, 15, 5, 0, tzinfo=UTC)
    assert build_suggestions(read, device_id=member.device_id, committed=(), now=now, tz=TZ) == \
        build_suggestions(windows, device_id=member.device_id, committed=(), now=now, tz=TZ)


def test_settlement_job_over_http_readings(meter, small, sessions, nudging):
    url, calls = nudging
    notifier = Notifier(sessions, Channels(nudging=NudgingClient(url, policy=RetryPolicy(max_tries=1))))
    devices = [p for p in small.all_members(SMALL) if p.device_id][:5]
    start = datetime(2026, 6, 15, 9, tzinfo=UTC)
    with sessions.begin() as session:
        for p in devices:
            store.create_commitment(session, user_id=p.recipient, suggestion_id="w", community_id=SMALL,
                                    device_id=p.device_id, period_start=start, period_end=start + timedelta(hours=3))
    readings = pipeline.settlement_readings(SMALL, DAY, meter)
    assert readings.groupby("device_id").size().unique().tolist() == [24]
    report, sent = pipeline.run_settlement(sessions, notifier, DAY, readings, CONFIG, run_id="dagster-run-1")
    assert len(report.settled) == 5 and sent == {"sent": 5}
    assert {c["body"]["event_type"] for c in calls} == {"commitment_settled"}
    with sessions() as session:
        assert {e.run_id for e in store.ledger_entries(session)} == {"dagster-run-1"}


def test_forecast_and_opportunities_for_every_community(meter, small, sessions, nudging):
    url, calls = nudging
    notifier = Notifier(sessions, Channels(nudging=NudgingClient(url, policy=RetryPolicy(max_tries=1))))
    now = datetime(2026, 6, 15, 4, 10, tzinfo=UTC)
    forecasts = {c: pipeline.community_forecast(c, meter, now, CONFIG) for c in small.communities()}
    counts = pipeline.send_opportunities(small, forecasts, now, notifier, CONFIG)
    recipients = {p.recipient for p in small.participants}
    assert counts == {"sent": len(recipients)}
    assert {c["body"]["community_id"] for c in calls} == {SMALL, "rec-other"}
    assert pipeline.send_opportunities(small, forecasts, now, notifier, CONFIG) == {"skipped": len(recipients)}


def test_scoring_job_and_publication(small, sessions, tmp_path):
    members = small.all_members(SMALL)
    start, end = local_day_bounds(DAY, TZ)
    device = next(p for p in members if p.device_id)
    with sessions.begin() as session:
        row = store.create_commitment(session, user_id=device.recipient, suggestion_id="w", community_id=SMALL,
                                      device_id=device.device_id, period_start=start + timedelta(hours=10),
                                      period_end=start + timedelta(hours=12))
    store.settle_one(sessions, row.id, reward_points_actual=5, actual_kwh=0.5, now=end)
    previous = pd.DataFrame(columns=["user_id", "day", "base_points", "bonus_points", "daily_points"])
    daily, bonus, board = pipeline.score_community_day(
        DAY, SMALL, small, sessions, consumption=device_consumption(members, start, end, TZ),
        history=device_consumption(members, start - timedelta(days=30), start, TZ),
        community=community_exchange(members, start, end, TZ, "15min"), previous_daily=previous, config=CONFIG)
    assert list(bonus["commitment_id"]) == [row.id]
    assert set(daily["day"]) == {DAY} and board["total_members"].iloc[0] == len({p.recipient for p in members})
    publications.publish_scoring(tmp_path, SMALL, daily, board)
    read_daily, read_board = publications.read_scoring(tmp_path, SMALL)
    pd.testing.assert_frame_equal(read_daily, daily, check_dtype=False)
    assert list(read_board["season_rank"]) == list(board["season_rank"])
