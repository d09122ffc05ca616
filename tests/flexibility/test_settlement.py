"""Settlement (flexibility.md §4.1): points, selection, late data, DST, crashes, concurrent runs.

Readings come from the meter stand-in (real SimBench profiles over HTTP) or are written out
where a test needs exact values (rounding cases). Concurrency runs against a SQLite file and
the real PostgreSQL (isolated schema).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from flex_fixtures import COMMUNITY, TZ
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from grid_platform.flexibility import settlement
from grid_platform.flexibility.meters import MeterClient
from grid_platform.flexibility.settlement import (
    points_for_readings,
    settle_day,
    settle_points,
    settlement_date,
)
from grid_platform.store import flexibility as store

ZRH = ZoneInfo(TZ)
DAY = date(2026, 6, 10)
NOW = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def add(sessions: sessionmaker, start: datetime, end: datetime, *, user: str = "u1", device: str | None = "dev-1",
        community: str | None = COMMUNITY, suggestion: str | None = None, status: str = "committed"):
    with sessions.begin() as session:
        return store.create_commitment(session, user_id=user, suggestion_id=suggestion or uuid.uuid4().hex[:16],
                                       community_id=community, device_id=device, period_start=start, period_end=end,
                                       reward_points_estimated=10, status=status).id


def hourly(device: str, day: date, values: list) -> pd.DataFrame:
    return pd.DataFrame({"ts": [at(day, h) for h in range(len(values))], "device_id": device,
                         "consumption_kwh": values})


def row(sessions: sessionmaker, commitment_id) -> store.Commitment:
    with sessions() as session:
        return store.get_commitment(session, commitment_id)


def test_points_round_half_to_even():
    assert points_for_readings([0.25]) == (2, 0.25)
    assert points_for_readings([0.35]) == (4, 0.35)
    assert points_for_readings([1.25]) == (12, 1.25)
    assert points_for_readings([0.1, 0.15])[0] == 2  # exact sum: no float artefact
    assert points_for_readings(["n/a", None, 0.35]) == (4, 0.35)  # non-numeric counts as 0
    assert points_for_readings([]) is None


def test_rounding_cases_through_the_job(sessions):
    cases = {"d-025": [0.1, 0.15], "d-035": [0.35], "d-125": [0.5, 0.5, 0.25], "d-bad": ["x", 0.25]}
    ids = {d: add(sessions, at(DAY, 10), at(DAY, 13), device=d) for d in cases}
    readings = pd.concat([hourly(d, DAY, [None] * 10 + v) for d, v in cases.items()])
    report = settle_day(sessions, DAY, readings, now=NOW)
    assert len(report.settled) == 4
    assert {d: row(sessions, i).reward_points_actual for d, i in ids.items()} == {
        "d-025": 2, "d-035": 4, "d-125": 12, "d-bad": 2}
    assert row(sessions, ids["d-125"]).actual_kwh == pytest.approx(1.25)


def test_vectorised_equals_per_row_reference():
    rng = np.random.default_rng(7)
    devices = [f"m{i}" for i in range(40)]
    ts = pd.date_range("2026-06-01", periods=24 * 10, freq="h", tz="UTC")
    readings = pd.DataFrame({"ts": np.tile(ts, len(devices)), "device_id": np.repeat(devices, len(ts)),
                             "consumption_kwh": np.round(rng.gamma(1.2, 0.4, len(ts) * len(devices)), 3)})
    readings.loc[rng.choice(len(readings), 50, replace=False), "consumption_kwh"] = np.nan
    # Out of order, and 100 (device, ts) sent again with another value: the later row counts.
    again = readings.iloc[rng.choice(len(readings), 100, replace=False)].assign(consumption_kwh=9.75)
    readings = pd.concat([readings.sample(frac=1, random_state=7), again], ignore_index=True)
    n = 600
    starts = ts[rng.integers(0, len(ts) - 4, n)] + pd.to_timedelta(rng.integers(0, 60, n), unit="min")
    commitments = pd.DataFrame({"commitment_id": range(n), "device_id": rng.choice(devices + ["unknown"], n),
                                "period_start": starts,
                                "period_end": starts + pd.to_timedelta(rng.integers(1, 30, n), unit="h")})
    fast = settle_points(commitments, readings).set_index("commitment_id")
    kept = readings.drop_duplicates(["device_id", "ts"], keep="last")
    by_device = {d: g.sort_values("ts") for d, g in kept.groupby("device_id")}
    expected = {}
    for c in commitments.itertuples():
        g = by_device.get(c.device_id)
        if g is None:
            continue
        values = g[(g["ts"] >= c.period_start) & (g["ts"] < c.period_end)]["consumption_kwh"].tolist()
        result = points_for_readings(values)
        if result is not None:
            expected[c.commitment_id] = result
    assert set(fast.index) == set(expected)
    for cid, (points, kwh) in expected.items():
        assert fast.loc[cid, "reward_points_actual"] == points
        assert fast.loc[cid, "actual_kwh"] == pytest.approx(kwh, abs=1e-9)


def test_settlement_date_rule():
    assert settlement_date("2026-06-11") == date(2026, 6, 10)
    assert settlement_date(datetime(2026, 6, 11, 0, 30, tzinfo=UTC)) == date(2026, 6, 10)
    assert settlement_date("garbage", today=date(2026, 6, 11)) == date(2026, 6, 10)


def test_selection_statuses_and_unassigned_rows(sessions):
    inside = add(sessions, at(DAY, 10), at(DAY, 12))
    crossing = add(sessions, at(DAY, 22), at(DAY + timedelta(days=1), 1))  # crosses midnight UTC
    ends_at_midnight = add(sessions, at(DAY, 21), at(DAY + timedelta(days=1), 0))
    cancelled = add(sessions, at(DAY, 10), at(DAY, 12), user="u2")
    with sessions.begin() as session:
        assert store.cancel(session, "u2", cancelled).changed
    rejected = add(sessions, at(DAY, 10), at(DAY, 12), status="rejected", device=None, community=None)
    no_device = add(sessions, at(DAY, 10), at(DAY, 12), device=None)
    no_community = add(sessions, at(DAY, 10), at(DAY, 12), community=None)
    readings = hourly("dev-1", DAY, [0.2] * 24)
    readings = pd.concat([readings, hourly("dev-1", DAY + timedelta(days=1), [0.2] * 24)])
    report = settle_day(sessions, DAY, readings, now=NOW)
    assert set(report.settled) == {inside, ends_at_midnight}
    assert report.skipped_unassigned == 2
    assert row(sessions, crossing).status == "committed"  # never selected for any UTC day
    assert settle_day(sessions, DAY + timedelta(days=1), readings, now=NOW).settled == []
    assert row(sessions, crossing).status == "committed"
    assert row(sessions, cancelled).status == "cancelled" and row(sessions, rejected).status == "rejected"
    assert row(sessions, no_device).status == "committed" and row(sessions, no_community).status == "committed"
    settled = row(sessions, inside)
    assert (settled.status, settled.reward_points_actual, settled.actual_kwh) == ("settled", 4, pytest.approx(0.4))
    assert settled.settled_at == NOW
    with sessions() as session:
        assert store.stale_committed(session, NOW + timedelta(days=3)) == 3  # crossing, no_device, no_community


def test_late_meter_data_settles_on_a_later_run_never_twice(sessions):
    early = add(sessions, at(DAY, 8), at(DAY, 10), device="dev-a")
    late = add(sessions, at(DAY, 8), at(DAY, 10), device="dev-b")
    first = settle_day(sessions, DAY, hourly("dev-a", DAY, [0.5] * 24), now=NOW)
    assert first.settled == [early] and first.missing_readings == 1
    assert row(sessions, late).status == "committed"
    both = pd.concat([hourly("dev-a", DAY, [9.0] * 24), hourly("dev-b", DAY, [0.3] * 24)])
    second = settle_day(sessions, DAY, both, now=NOW + timedelta(hours=5))
    assert second.settled == [late]
    assert row(sessions, early).reward_points_actual == 10  # not re-settled with the changed data
    assert row(sessions, late).reward_points_actual == 6
    assert settle_day(sessions, DAY, both, now=NOW).settled == []  # rerun: no-op
    with sessions() as session:
        assert len(store.ledger_entries(session)) == 2


def test_manual_settle_uses_the_ledger(sessions):
    cid = add(sessions, at(DAY, 8), at(DAY, 10))
    assert store.settle_one(sessions, cid, reward_points_actual=7, actual_kwh=0.7, now=NOW).changed
    again = store.settle_one(sessions, cid, reward_points_actual=9, actual_kwh=0.9, now=NOW)
    assert again.found and not again.changed and again.row.reward_points_actual == 7
    assert not store.settle_one(sessions, uuid.uuid4(), reward_points_actual=1, actual_kwh=None, now=NOW).found
    assert settle_day(sessions, DAY, hourly("dev-1", DAY, [1.0] * 24), now=NOW).settled == []


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_sessions(request) -> sessionmaker:
    if request.param == "sqlite":
        return request.getfixturevalue("sessions")
    return sessionmaker(request.getfixturevalue("pg_schema_engine"), expire_on_commit=False)


def test_ledger_write_settles_only_committed_rows_once(backend_sessions):
    """One batch with a fresh row (twice), a row settled before and one cancelled meanwhile."""
    sessions = backend_sessions
    fresh, settled_before, cancelled = (add(sessions, at(DAY, 8), at(DAY, 10), user=f"u{i}") for i in range(3))
    assert store.settle_one(sessions, settled_before, reward_points_actual=3, actual_kwh=0.3, now=NOW).changed
    with sessions.begin() as session:
        assert store.cancel(session, "u2", cancelled).changed
    batch = [(fresh, 5, 0.5), (settled_before, 9, 0.9), (cancelled, 7, 0.7), (fresh, 6, 0.6)]
    with store.write_transaction(sessions) as session:
        assert store.record_settlements(session, batch, now=NOW, period_date=DAY, run_id="run-1") == [fresh]
    with sessions() as session:
        ledger = {e.commitment_id: e for e in store.ledger_entries(session)}
    assert set(ledger) == {fresh, settled_before}  # the cancelled row's claim is taken back
    entry = ledger[fresh]
    assert (entry.reward_points_actual, entry.actual_kwh, entry.period_date, entry.run_id, entry.settled_at,
            entry.source) == (5, 0.5, DAY, "run-1", NOW, "job")  # the first claim of a repeated id
    settled = row(sessions, fresh)
    assert (settled.status, settled.reward_points_actual, settled.actual_kwh, settled.settled_at) == (
        "settled", 5, 0.5, NOW)
    assert (ledger[settled_before].source, row(sessions, settled_before).reward_points_actual) == ("api", 3)
    assert row(sessions, cancelled).status == "cancelled"
    with store.write_transaction(sessions) as session:  # a rerun of the same batch: nothing left to settle
        assert store.record_settlements(session, batch, now=NOW, period_date=DAY) == []


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_dst_days_against_the_meter_stand_in(sessions, registry, meter_url, day):
    """Windows given in local time over the DST change settle against the real UTC hours."""
    spring = day.month == 3
    member = next(p for p in registry.all_members(COMMUNITY) if p.device_id)
    local = lambda h: datetime(day.year, day.month, day.day, h, tzinfo=ZRH).astimezone(UTC)
    # Spring: 01:00-04:00 local is 00:00-02:00 UTC (2 h). Autumn: 02:00 (first) - 04:00 local
    # is 00:00-03:00 UTC (3 h, the repeated hour included).
    windows = [(local(1 if spring else 2), local(4)), (local(6), local(9)), (local(18), local(21))]
    ids = [add(sessions, s, e, device=member.device_id) for s, e in windows]
    # Autumn 01:00-04:00 local starts 23:00 UTC the day before: it crosses midnight UTC.
    crossing = add(sessions, local(1), local(4), device=member.device_id) if not spring else None
    with MeterClient(meter_url) as client:
        quarter = client.device_consumption(member.device_id, day, day)
        readings = client.device_consumption(member.device_id, day - timedelta(days=1), day + timedelta(days=1), "1h")
    assert len(quarter) == (92 if spring else 100)  # local-day reporting
    for settle in (day - timedelta(days=1), day):
        settle_day(sessions, settle, readings, now=NOW)
    for cid, (start, end) in zip(ids, windows):
        inside = readings[(readings["ts"] >= start) & (readings["ts"] < end)]
        assert row(sessions, cid).status == "settled"
        assert row(sessions, cid).reward_points_actual == points_for_readings(inside["consumption_kwh"])[0]
    assert round((windows[0][1] - windows[0][0]) / timedelta(hours=1)) == (2 if spring else 3)
    if crossing is not None:
        assert row(sessions, crossing).status == "committed"


def test_crash_in_the_middle_settles_nothing_twice(sessions, monkeypatch):
    ids = [add(sessions, at(DAY, 10), at(DAY, 12), device=f"m{i}") for i in range(10)]
    readings = pd.concat([hourly(f"m{i}", DAY, [0.1 * (i + 1)] * 24) for i in range(10)])
    real = store.record_settlements
    calls = []

    def crash_in_second_batch(session, rows, **kw):
        settled = real(session, rows, **kw)  # the batch is written, but not committed
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("worker killed mid-batch")
        return settled

    monkeypatch.setattr(store, "record_settlements", crash_in_second_batch)
    with pytest.raises(RuntimeError):
        settle_day(sessions, DAY, readings, now=NOW, batch_size=4)
    statuses = [row(sessions, i).status for i in ids]
    assert statuses.count("settled") == 4  # only the first, committed batch
    monkeypatch.setattr(store, "record_settlements", real)
    rerun = settle_day(sessions, DAY, readings, now=NOW + timedelta(minutes=5), batch_size=4)
    assert len(rerun.settled) == 6 and rerun.selected == 6
    with sessions() as session:
        ledger = store.ledger_entries(session)
    assert sorted(e.commitment_id for e in ledger) == sorted(ids)
    assert [row(sessions, ids[i]).reward_points_actual for i in (0, 5, 9)] == [2, 12, 20]


def _concurrent_runs(sessions: sessionmaker, n: int, runs: int = 2) -> list[settlement.SettlementReport]:
    devices = [f"m{i % 25}" for i in range(n)]
    rng = random.Random(3)
    with sessions.begin() as session:
        for i, device in enumerate(devices):
            h = rng.randrange(0, 20)
            store.create_commitment(session, user_id=f"u{i}", suggestion_id=f"s{i}", community_id=COMMUNITY,
                                    device_id=device, period_start=at(DAY, h), period_end=at(DAY, h + 3))
    readings = pd.concat([hourly(f"m{i}", DAY, [round(0.05 * (i + h) % 1.3, 3) for h in range(24)])
                          for i in range(25)])
    barrier = threading.Barrier(runs)
    reports: list[settlement.SettlementReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            # A pause after each batch commit keeps the runs interleaved over the same rows.
            reports.append(settle_day(sessions, DAY, readings, now=NOW, batch_size=25,
                                      on_batch=lambda *_: time.sleep(0.02)))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return reports


def _assert_exactly_once(sessions: sessionmaker, reports, n: int) -> None:
    settled = [cid for r in reports for cid in r.settled]
    assert sum(r.selected for r in reports) > n  # the runs did compete for the same rows
    assert sum(r.already_settled for r in reports) > 0
    assert len(settled) == n and len(set(settled)) == n  # each row by exactly one run
    with sessions() as session:
        batches, counted = session.execute(select(func.count(), func.sum(store.SettlementBatch.commitments))).one()
        entries = store.ledger_entries(session)
    assert len(entries) == counted == n
    assert batches == len({e.batch_id for e in entries})  # no ledger row for a batch that settled nothing
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(store.Commitment)
                              .where(store.Commitment.status == "settled")) == n


def test_two_runs_at_once_on_sqlite(sessions):
    reports = _concurrent_runs(sessions, 300, runs=3)
    _assert_exactly_once(sessions, reports, 300)


def test_two_runs_at_once_on_postgresql(pg_schema_engine):
    sessions = sessionmaker(pg_schema_engine, expire_on_commit=False)
    reports = _concurrent_runs(sessions, 300, runs=3)
    _assert_exactly_once(sessions, reports, 300)
