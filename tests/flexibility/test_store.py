"""Commitment store: migrations 0003 and 0004 up and down on SQLite and PostgreSQL (the models
match them; settlements carried between the two ledger layouts), the status CHECK, duplicate accepts, the ``/pending`` stamp under concurrency, pagination totals.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import BLANK_SCHEMA, MetaData, inspect
from sqlalchemy.exc import IntegrityError

from grid_platform.store import flexibility as store
from grid_platform.store.db import downgrade, make_engine, upgrade
from grid_platform.store.models import NAMING

T0 = datetime(2026, 6, 10, 10, tzinfo=UTC)
FLEX_TABLES = {"flexibility_commitments", "flexibility_settlement_batches"}


def _plain_metadata() -> MetaData:
    """The flexibility models without their schema: the SQLite layout."""
    metadata = MetaData(naming_convention=NAMING)
    for table in store.FlexBase.metadata.sorted_tables:
        table.to_metadata(metadata, schema=None, referred_schema_fn=lambda *_: BLANK_SCHEMA)
    return metadata


def _diff(engine, metadata: MetaData, schema: str | None):
    def include_name(name, kind, parent):
        if kind == "schema":
            return name == schema
        if kind == "table":
            return name in FLEX_TABLES
        return True

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_schemas": schema is not None,
                                                               "include_name": include_name})
        return compare_metadata(context, metadata)


def _check_migrations(url: str, schema: str | None) -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names(schema=schema)) >= FLEX_TABLES
        metadata = store.FlexBase.metadata if schema else _plain_metadata()
        assert _diff(engine, metadata, schema) == []
        downgrade(url, "0002")
        assert not FLEX_TABLES & set(inspect(engine).get_table_names())
        if schema:
            assert schema not in inspect(engine).get_schema_names()
        upgrade(url)
        upgrade(url)  # idempotent at head
        assert set(inspect(engine).get_table_names(schema=schema)) >= FLEX_TABLES
    finally:
        engine.dispose()


def test_migration_on_sqlite(tmp_path):
    _check_migrations(f"sqlite:///{tmp_path / 'state.db'}", None)


def _carry_settlements_between_ledger_layouts(url: str, schema: str | None) -> None:
    """Rows of the 0003 per-commitment ledger become batches in 0004, and come back on downgrade."""
    upgrade(url, "0003")
    engine = make_engine(url)
    settled, live, again = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key = (lambda u: u) if schema else (lambda u: u.hex)  # native uuid on PostgreSQL, CHAR(32) on SQLite
    try:
        meta = MetaData()
        commitments = sa.Table("flexibility_commitments", meta, autoload_with=engine, schema=schema)
        ledger = sa.Table("flexibility_settlements", meta, autoload_with=engine, schema=schema)
        with engine.begin() as connection:
            common = {"user_id": "u", "suggestion_type": "shift-consumption", "community_id": "c",
                      "device_id": "d", "period_start": T0, "period_end": T0 + timedelta(hours=1),
                      "committed_at": T0 - timedelta(days=1), "reward_points_estimated": 10}
            connection.execute(commitments.insert(), {
                **common, "id": key(settled), "suggestion_id": "s1", "status": "settled",
                "settled_at": T0 + timedelta(days=1), "reward_points_actual": 7, "actual_kwh": 0.7})
            connection.execute(commitments.insert(), {**common, "id": key(live), "suggestion_id": "s2",
                                                      "status": "committed"})
            # Accepted again after its settlement (0003 allowed it): settling it would pay s1 twice.
            connection.execute(commitments.insert(), {**common, "id": key(again), "suggestion_id": "s1",
                                                      "status": "committed"})
            connection.execute(ledger.insert(), {
                "commitment_id": key(settled), "batch_id": "b" * 32, "run_id": "run-1", "period_date": T0.date(),
                "reward_points_actual": 7, "actual_kwh": 0.7, "settled_at": T0 + timedelta(days=1),
                "source": "job"})
        upgrade(url)
        sessions = store.flexibility_sessions(engine)
        with sessions() as session:
            entries = store.ledger_entries(session)
            batch = session.get(store.SettlementBatch, 1)
            assert store.get_commitment(session, live).settlement_batch_id is None
            assert (store.get_commitment(session, again).status, store.held_commitment(session, "u", "s1").id) == (
                "cancelled", settled)
        assert [(e.commitment_id, e.batch_id, e.run_id, e.period_date, e.reward_points_actual, e.source)
                for e in entries] == [(settled, 1, "run-1", T0.date(), 7, "job")]
        assert (batch.commitments, batch.reward_points, batch.settled_at) == (1, 7, T0 + timedelta(days=1))
        with pytest.raises(IntegrityError), sessions.begin() as session:  # the rebuilt CHECK holds
            session.execute(sa.update(store.Commitment).where(store.Commitment.id == live).values(status="done"))
        downgrade(url, "0003")
        with engine.connect() as connection:
            back = connection.execute(sa.select(ledger.c.commitment_id, ledger.c.batch_id, ledger.c.run_id,
                                                ledger.c.reward_points_actual, ledger.c.source)).all()
            statuses = dict(connection.execute(sa.select(commitments.c.id, commitments.c.status)).all())
        assert back == [(key(settled), "1", "run-1", 7, "job")]
        assert statuses == {key(settled): "settled", key(live): "committed", key(again): "cancelled"}
        upgrade(url)
        assert store.settle_one(sessions, live, reward_points_actual=1, actual_kwh=0.1, now=T0).changed
        with sessions() as session:  # numbering continues after the carried-over batch
            assert store.get_commitment(session, live).settlement_batch_id == 2
    finally:
        engine.dispose()


def test_ledger_carried_over_on_sqlite(tmp_path):
    _carry_settlements_between_ledger_layouts(f"sqlite:///{tmp_path / 'state.db'}", None)


def test_ledger_carried_over_on_postgresql(pg_database):
    _carry_settlements_between_ledger_layouts(pg_database, store.FLEX_SCHEMA)


def test_sqlite_engine_settings(sqlite_url):
    """Every connection of the platform's SQLite engine: WAL, NORMAL sync, a 64 MiB cache, foreign keys."""
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            settings = [connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                        for name in ("journal_mode", "synchronous", "cache_size", "foreign_keys")]
    finally:
        engine.dispose()
    assert settings == ["wal", 1, -65536, 1]


def test_migration_on_postgresql(pg_database):
    _check_migrations(pg_database, store.FLEX_SCHEMA)
    engine = make_engine(pg_database)
    sessions = store.flexibility_sessions(engine)
    try:
        with sessions.begin() as session:
            row = store.create_commitment(session, user_id="u", suggestion_id="s", period_start=T0,
                                          period_end=T0 + timedelta(hours=2))
        with engine.connect() as connection:  # really in schema "flexibility"
            assert connection.exec_driver_sql(
                "SELECT count(*) FROM flexibility.flexibility_commitments").scalar() == 1
        assert store.settle_one(sessions, row.id, reward_points_actual=3, actual_kwh=0.3,
                                now=T0 + timedelta(days=1)).changed
    finally:
        engine.dispose()


def test_constraints(sessions):
    with pytest.raises(ValueError), sessions.begin() as session:
        store.create_commitment(session, user_id="u", suggestion_id="s", period_start=T0, period_end=T0)
    with pytest.raises(ValueError), sessions.begin() as session:
        store.create_commitment(session, user_id="u", suggestion_id="s", period_start=T0.replace(tzinfo=None),
                                period_end=T0 + timedelta(hours=1))
    with sessions.begin() as session:
        store.create_commitment(session, user_id="u", suggestion_id="s", period_start=T0,
                                period_end=T0 + timedelta(hours=1))
    with pytest.raises(IntegrityError), sessions.begin() as session:  # one live commitment per (user, suggestion)
        store.create_commitment(session, user_id="u", suggestion_id="s", period_start=T0,
                                period_end=T0 + timedelta(hours=1))
    with sessions.begin() as session:  # a rejected row for the same suggestion is fine
        store.create_commitment(session, user_id="u", suggestion_id="s", period_start=T0,
                                period_end=T0 + timedelta(hours=1), status="rejected")


def test_a_suggestion_is_held_until_released(sessions):
    """Committed or settled, a suggestion is held (accepting returns that row); cancelled or
    declined, it is released (``released_at``) and can be taken again."""
    fields = {"user_id": "u", "suggestion_id": "w", "period_start": T0, "period_end": T0 + timedelta(hours=1)}
    first, created = store.accept(sessions, **fields)
    assert created and first.released_at is None
    with sessions.begin() as session:
        assert store.cancel(session, "u", first.id, now=T0).row.released_at == T0
    second, created = store.accept(sessions, **fields)
    assert created and second.id != first.id
    assert store.settle_one(sessions, second.id, reward_points_actual=2, actual_kwh=0.2, now=T0).changed
    held, created = store.accept(sessions, **fields)
    assert (held.id, held.status, created) == (second.id, "settled", False)
    with sessions.begin() as session:
        declined = store.create_commitment(session, **fields, status="rejected", now=T0)
        assert declined.released_at == T0
    with pytest.raises(IntegrityError), sessions.begin() as session:  # released only with a terminal status
        session.execute(sa.update(store.Commitment).where(store.Commitment.id == second.id).values(released_at=T0))


def test_concurrent_duplicate_accepts_insert_one_row(sessions):
    barrier = threading.Barrier(6)
    results, errors = [], []

    def accept() -> None:
        try:
            barrier.wait()
            results.append(store.accept(sessions, user_id="racer", suggestion_id="w1", period_start=T0,
                                        period_end=T0 + timedelta(hours=2)))
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=accept) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({row.id for row, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_pending_is_claimed_once(sessions):
    with sessions.begin() as session:
        live = store.create_commitment(session, user_id="u", suggestion_id="a", period_start=T0,
                                       period_end=T0 + timedelta(hours=2))
        store.create_commitment(session, user_id="u", suggestion_id="b", period_start=T0 + timedelta(hours=3),
                                period_end=T0 + timedelta(hours=4))  # not yet in its window
    now = T0 + timedelta(minutes=30)
    barrier = threading.Barrier(4)
    claimed = []

    def sweep() -> None:
        barrier.wait()
        with store.write_transaction(sessions) as session:
            claimed.extend(r.id for r in store.claim_pending(session, now))

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert claimed == [live.id]
    with sessions() as session:
        assert store.get_commitment(session, live.id).reminded_at == now


def test_list_pagination_and_totals(sessions):
    with sessions.begin() as session:
        for i in range(7):
            store.create_commitment(session, user_id="u", suggestion_id=f"s{i}", period_start=T0,
                                    period_end=T0 + timedelta(hours=1), now=T0 + timedelta(minutes=i))
        store.create_commitment(session, user_id="other", suggestion_id="x", period_start=T0,
                                period_end=T0 + timedelta(hours=1))
    with sessions() as session:
        page, total = store.list_commitments(session, user_id="u", limit=3, offset=3)
        assert total == 7 and [r.suggestion_id for r in page] == ["s3", "s2", "s1"]
        assert store.list_commitments(session, user_id="u", status="settled")[1] == 0
        with pytest.raises(ValueError):
            store.list_commitments(session, user_id="u", limit=201)
        assert store.get_commitment(session, page[0].id, "other") is None
        assert store.cancel(session, "other", page[0].id) == store.Outcome(False, False, None)
        assert [r.suggestion_id for r in store.export(session, T0 + timedelta(minutes=5))] == ["s5", "s6", "x"]
        assert store.committed_suggestion_ids(session, "u") == {f"s{i}" for i in range(7)}
        assert isinstance(page[0].id, uuid.UUID) and page[0].committed_at.tzinfo is not None
