"""Fixtures of the flexibility tests: the demo registry, state databases, the meter stand-in.

PostgreSQL runs on 127.0.0.1:5432 (``GRID_TEST_PG_URL``): migrations get their own database,
the concurrency tests an isolated schema of the ``test`` database (created and dropped here).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from flex_fixtures import COMMUNITY, PG_URL, TZ, pg_admin
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from grid_platform.flexibility.participants import ParticipantRegistry
from grid_platform.standins.meters import create_app as meters_app
from grid_platform.standins.server import running
from grid_platform.store import flexibility as store
from grid_platform.store.db import make_engine, upgrade


@pytest.fixture(scope="session")
def registry() -> ParticipantRegistry:
    return ParticipantRegistry.demo({COMMUNITY: 300}, 2026)


@pytest.fixture(scope="session")
def meter_url(registry) -> Iterator[str]:
    with running(meters_app(registry, tz=TZ)) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(url)
    return url


@pytest.fixture
def sessions(sqlite_url) -> Iterator[sessionmaker]:
    engine = make_engine(sqlite_url)
    yield store.flexibility_sessions(engine)
    engine.dispose()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database (for migrations), dropped afterwards."""
    try:
        admin = pg_admin()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} unreachable: {exc}")
    name = f"flex_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_schema_engine() -> Iterator[Engine]:
    """The flexibility tables in an isolated schema of the shared ``test`` database."""
    try:
        pg_admin().close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} unreachable: {exc}")
    schema = f"flex_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_URL, pool_size=8).execution_options(
        schema_translate_map={store.FLEX_SCHEMA: schema})
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        store.FlexBase.metadata.create_all(connection)
    try:
        yield engine
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()
