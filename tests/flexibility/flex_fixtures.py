"""Shared constants and helpers of the flexibility tests (imported by conftest and the tests)."""

from __future__ import annotations

import os

import psycopg
from sqlalchemy.engine import make_url

PG_URL = os.environ.get("GRID_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
TZ = "Europe/Zurich"
COMMUNITY = "rec-demo"


def pg_admin(url: str = PG_URL) -> psycopg.Connection:
    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                           dbname=u.database, autocommit=True, connect_timeout=3)
