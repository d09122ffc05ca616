"""Delivery ledger and processed events (migration 0002) on a SQLite file and on the real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alerts_fixtures import sessions_for
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from grid_platform.store import dispatch as ledger
from grid_platform.store.db import downgrade, make_engine, upgrade
from grid_platform.store.models import Base, utcnow

FIELDS = {"event_type": "grid_risk_report", "channel": "ingest", "recipient_key": "u1", "period": "2026-07-01",
          "network_id": "ckw"}


def claim(session, key, **changes):
    return ledger.claim(session, key, **{**FIELDS, "payload": {"n": 1}, **changes})


def test_migrations_0001_0002_up_and_down(db_url):
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"alert_rules", "notification_settings", "deliveries", "processed_events"} <= tables
        with engine.connect() as connection:
            # Only this migration's tables: other domains' migrations and models live elsewhere.
            mine = {"deliveries", "processed_events"}
            context = MigrationContext.configure(connection, opts={
                "include_name": lambda name, kind, parents: kind != "table" or name in mine,
                "include_object": lambda obj, name, kind, reflected, other: kind != "table" or name in mine})
            assert compare_metadata(context, Base.metadata) == []
        downgrade(db_url, "0001")
        tables = set(inspect(engine).get_table_names())
        assert "deliveries" not in tables and "processed_events" not in tables and "alert_rules" in tables
        upgrade(db_url)
        assert "deliveries" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_keys():
    key = ledger.delivery_key("grid_risk_report", "ckw", "email-ingest:0123456789abcdef", "2026-07-01")
    assert key == "grid_risk_report|ckw|email-ingest:0123456789abcdef|2026-07-01"
    assert ledger.idempotency_key(key) == ledger.idempotency_key(key) and len(ledger.idempotency_key(key)) == 64
    assert ledger.idempotency_key(key) != ledger.idempotency_key(key.replace("ckw", "ewl"))


def test_constraints(db_url):
    for sessions in sessions_for(db_url):
        with sessions.begin() as session:
            claim(session, "k")
        with pytest.raises(IntegrityError), sessions.begin() as session:
            session.add(ledger.Delivery(key="k", status="pending", idempotency_key="x", payload={}, attempts=0,
                                        **FIELDS))
        with pytest.raises(IntegrityError), sessions.begin() as session:
            session.add(ledger.Delivery(key="k2", status="lost", idempotency_key="x", payload={}, attempts=0,
                                        **FIELDS))


def _race(sessions, key: str, n: int = 8) -> list[ledger.Claim]:
    """n threads, each on its own connection, claim ``key`` at the same moment."""
    barrier = threading.Barrier(n)
    results: list[ledger.Claim] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            with sessions.begin() as session:
                results.append(claim(session, key))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_concurrent_claims_one_winner(db_url):
    for sessions in sessions_for(db_url):
        for round_ in range(3):
            results = _race(sessions, f"race-{round_}")
            assert sum(r.won for r in results) == 1
            assert {r.attempts for r in results} == {1}
        # A claimer that died: its lease ran out, and again exactly one takes over.
        with sessions.begin() as session:
            claim(session, "orphan", lease_s=0)
        results = _race(sessions, "orphan")
        assert sum(r.won for r in results) == 1
        with sessions.begin() as session:
            assert ledger.get_delivery(session, "orphan").attempts == 2


def test_life_cycle(db_url):
    for sessions in sessions_for(db_url):
        with sessions.begin() as session:
            first = claim(session, "k", payload={"v": "first"})
            assert first.won and first.status == "pending" and first.idempotency_key == ledger.idempotency_key("k")
            busy = claim(session, "k", payload={"v": "second"})
            assert not busy.won and busy.status == "pending"
        with sessions.begin() as session:
            assert ledger.mark_failed(session, "k", "HTTP 503", status_code=503, max_attempts=2) == "failed"
            retry = claim(session, "k", payload={"v": "second"})
            assert retry.won and retry.attempts == 2 and retry.payload == {"v": "first"}  # the stored body
            assert ledger.mark_failed(session, "k", "timeout", max_attempts=2) == "dead_letter"
            assert not claim(session, "k").won  # parked: only requeue revives it
            dead = ledger.dead_letters(session)
            assert [(d.key, d.last_error, d.attempts) for d in dead] == [("k", "timeout", 2)]
            assert ledger.count_dead_letters(session, event_type="grid_risk_report") == 1
            assert ledger.requeue(session, "k") and not ledger.requeue(session, "k")
            assert ledger.due_for_retry(session) == ["k"]
            again = claim(session, "k")
            assert again.won and again.attempts == 1
            ledger.mark_sent(session, "k", 202)
            row = ledger.get_delivery(session, "k")
            assert (row.status, row.status_code, row.last_error, row.lease_expires_at) == ("sent", 202, None, None)
            assert row.sent_at is not None and row.sent_at.tzinfo is not None
            done = claim(session, "k")
            assert not done.won and done.status == "sent"
            claim(session, "dup")
            ledger.mark_duplicate(session, "dup")
            claim(session, "rejected")
            ledger.park_dead_letter(session, "rejected", "HTTP 422", status_code=422)
            claim(session, "fresh-lease")
            claim(session, "stale", now=utcnow() - timedelta(hours=1), lease_s=60)
            assert ledger.due_for_retry(session) == ["stale"]
            assert ledger.due_for_retry(session, channels=["webhook"]) == []
            assert {d.key: d.status for d in ledger.deliveries(session)} == {
                "k": "sent", "dup": "duplicate", "rejected": "dead_letter", "fresh-lease": "pending",
                "stale": "pending"}


def test_processed_events(db_url):
    for sessions in sessions_for(db_url):
        fields = {"source": "mqtt", "run_id": "r1", "flow": "f", "namespace": "grid", "status": "completed",
                  "payload": {"run_id": "r1"}}
        with sessions.begin() as session:
            assert ledger.record_event(session, "r1|completed", **fields)
            assert not ledger.record_event(session, "r1|completed", **fields)
            assert ledger.record_event(session, "r1|failed", **{**fields, "status": "failed"})
        with sessions.begin() as session:
            assert [e.event_key for e in ledger.unhandled_events(session)] == ["r1|completed", "r1|failed"]
            ledger.mark_event_handled(session, "r1|completed", {"sent": 2})
        with sessions.begin() as session:
            assert [e.event_key for e in ledger.unhandled_events(session)] == ["r1|failed"]
