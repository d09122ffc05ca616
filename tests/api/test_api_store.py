"""State database: Alembic migrations up and down, constraints and upserts on SQLite and PostgreSQL.

PostgreSQL runs on 127.0.0.1:5432 (``GRID_TEST_PG_URL``); each test creates and drops its
own database. The tests skip only when that server cannot be reached.
"""

from __future__ import annotations

import os
import threading
import uuid

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from grid_platform.store import rules
from grid_platform.store.db import downgrade, make_engine, session_factory, upgrade
from grid_platform.store.models import AlertRule, Base, NotificationSettings

PG_URL = os.environ.get("GRID_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def _pg_admin(url: str):
    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                           dbname=u.database, autocommit=True, connect_timeout=3)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    try:
        admin = _pg_admin(PG_URL)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} unreachable: {exc}")
    name = f"grid_api_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with _pg_admin(PG_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_up_and_down(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        inspector = inspect(engine)
        assert {"alert_rules", "notification_settings", "alembic_version"} <= set(inspector.get_table_names())
        assert {i["name"] for i in inspector.get_indexes("alert_rules")} >= {"ix_alert_rules_user_id",
                                                                          "ix_alert_rules_network_id"}
        # Models and migrations agree on this area's tables (other areas' tables are theirs).
        mine = {AlertRule.__tablename__, NotificationSettings.__tablename__}
        opts = {"include_name": lambda name, kind, parent: kind != "table" or name in mine,
                # Tables other areas registered on the same metadata are theirs to compare.
                "include_object": lambda obj, name, kind, reflected, compare_to: kind != "table" or name in mine}
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection, opts=opts), Base.metadata) == []
        downgrade(db_url)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(db_url)
        upgrade(db_url)  # idempotent at head
        assert "alert_rules" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.fixture
def sessions(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def test_constraints(sessions):
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(AlertRule(user_id="u", network_id="", risk_types=["wind"], threshold="ALERT"))
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(AlertRule(user_id="u", network_id="ckw", risk_types=["wind"], threshold="NORMAL"))
    with sessions.begin() as session:
        session.add(NotificationSettings(user_id="u"))
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(NotificationSettings(user_id="u"))
    with sessions.begin() as session:
        assert session.execute(text("SELECT count(*) FROM notification_settings")).scalar() == 1


def test_repository(sessions):
    with sessions.begin() as session:
        a = rules.create_rule(session, user_id="u1", network_id="ckw", risk_types=["heat", "heat"], threshold="ALERT")
        rules.create_rule(session, user_id="u1", network_id="ewl", risk_types=["wind"], threshold="WARNING")
        rules.create_rule(session, user_id="u2", network_id="ckw", risk_types=["wind"], threshold="ALERT",
                          active=False)
    with sessions.begin() as session:
        assert [r.network_id for r in rules.list_rules(session, "u1")] == ["ckw", "ewl"]
        assert rules.get_rule(session, "u2", a.id) is None
        assert rules.list_rules(session, "u1")[0].risk_types == ["heat"]
        assert rules.list_rules(session, "u1")[0].created_at.tzinfo is not None
        assert [(r.user_id, r.network_id) for r in rules.active_rules(session)] == [("u1", "ckw"), ("u1", "ewl")]
        assert [r.user_id for r in rules.active_rules(session, "ckw")] == ["u1"]
        assert rules.deactivate_rules_outside(session, "u1", ["ewl"]) == 1
    with sessions.begin() as session:
        assert [r.network_id for r in rules.active_rules(session)] == ["ewl"]
        with pytest.raises(ValueError):
            rules.update_rule(session, rules.get_rule(session, "u1", a.id), {"risk_types": []})
        with pytest.raises(ValueError):
            rules.create_rule(session, user_id="u", network_id="", risk_types=["wind"], threshold="ALERT")


def test_concurrent_first_settings_access_is_an_upsert(sessions):
    barrier = threading.Barrier(6)
    errors, ids = [], []

    def first_get():
        try:
            barrier.wait()
            with sessions.begin() as session:
                ids.append(rules.get_settings(session, "racer").id)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=first_get) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(ids)) == 1


def test_api_on_each_backend(fresh_app, db_url, token):
    api = fresh_app(state_db_url=db_url)
    created = api.post("/api/alert-rules", headers=token(sub="pg"), json={"risk_types": ["heat"], "threshold": "ALERT"})
    assert created.status_code == 201
    rule_id = created.json()["id"]
    assert api.patch(f"/api/alert-rules/{rule_id}", headers=token(sub="pg"), json={"active": False}).json()["active"] is False
    assert api.get("/api/alert-rules", headers=token(sub="other")).json() == []
    assert api.get("/api/notification-settings", headers=token(sub="pg")).json()["user_id"] == "pg"
    assert api.delete(f"/api/alert-rules/{rule_id}", headers=token(sub="pg")).status_code == 204
    assert api.get("/health").json()["state_db"] == {"readable": True}
