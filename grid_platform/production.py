"""The production Dagster instance: ``deploy/dagster.postgres.yaml`` on PostgreSQL (dagster-postgres).

Its processes (webserver, daemon, run workers, celery workers) share the environment of
``PRODUCTION_ENV`` besides ``DAGSTER_PG_URL``. ``scratch_postgres_instance`` gives tests and
benchmarks that very instance on a fresh database of a real server (created on entry, dropped on
exit), with that environment exported for the processes they start (celery workers read the
instance from their environment).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg

from grid_platform.settings import PROJECT_ROOT

POSTGRES_VARIANT = PROJECT_ROOT / "deploy" / "dagster.postgres.yaml"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432"
PRODUCTION_ENV = {
    # A run over a partition range reports one materialisation per asset and partition (the risk
    # tables of a month: 10 assets x 30 dates). With a batch size dagster writes each output's events
    # in one INSERT instead of one PostgreSQL connection per event (dagster's opt-in batch writes).
    "DAGSTER_EVENT_BATCH_SIZE": "500",
}


def dagster_pg_url(server: str, database: str) -> str:
    # dagster-postgres speaks psycopg2 (SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://).
    return f"{server.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{database}"


@contextmanager
def scratch_postgres_instance(home: Path, server: str = LOCAL_SERVER,
                              prefix: str = "dagster_scratch") -> Iterator[tuple[dg.DagsterInstance, str]]:
    """The production instance in ``home`` (its ``dagster.yaml`` copied from the PostgreSQL variant)
    on a new database of ``server``; yields the instance and the database name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(POSTGRES_VARIANT, home / "dagster.yaml")
    environment = {**PRODUCTION_ENV, "DAGSTER_PG_URL": dagster_pg_url(server, name)}
    previous = {key: os.environ.get(key) for key in environment}
    with psycopg.connect(f"{server}/test", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'create database "{name}"')
        try:
            os.environ.update(environment)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                yield instance, name
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            admin.execute(f'drop database if exists "{name}" with (force)')
