"""Fixtures of the alert tests: migrated state databases (SQLite file, real PostgreSQL) and the
nudging stand-in served on a free 127.0.0.1 port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from alerts_fixtures import PG_URL, pg_database, pg_reachable, sessions_for
from sqlalchemy.orm import sessionmaker

from grid_platform.standins.nudging import create_app
from grid_platform.standins.server import running
from grid_platform.store.db import upgrade

PG = os.environ.get("GRID_TEST_PG_URL", PG_URL)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_url(request, tmp_path) -> Iterator[str]:
    """A state database migrated to head (0001 + 0002), on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        upgrade(url)
        yield url
        return
    reason = pg_reachable(PG)
    if reason:
        pytest.skip(f"PostgreSQL at {PG} unreachable: {reason}")
    with pg_database(PG) as url:
        upgrade(url)
        yield url


@pytest.fixture
def sessions(sqlite_url) -> Iterator[sessionmaker]:
    yield from sessions_for(sqlite_url)


@dataclass
class NudgingStandin:
    url: str

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = httpx.request(method, self.url + "/_standin" + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response

    def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        return self.control("GET", "/deliveries", params=filters).json()["deliveries"]

    def events(self) -> list[dict[str, Any]]:
        return self.control("GET", "/events").json()["events"]

    def faults(self, **config: Any) -> None:
        self.control("PUT", "/faults", json=config)

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "/stats").json()


@pytest.fixture(scope="module")
def nudging_server() -> Iterator[str]:
    with running(create_app()) as url:
        yield url


@pytest.fixture
def nudging(nudging_server) -> NudgingStandin:
    """The stand-in, reset (no faults, no state) for each test."""
    standin = NudgingStandin(nudging_server)
    standin.control("POST", "/reset")
    return standin
