"""Fixtures of the read-API tests: published networks, an app, tokens."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from grid_api_fixtures import (
    NETWORKS,
    TEST_SECRET,
    dso,
    local_today,
    make_config,
    make_settings,
    publish_risk,
    publish_topology,
    sign,
)

from grid_platform.api.app import create_app
from grid_platform.api.config import ApiConfig

# Starlette 1.x announces its move to httpx2; the test client itself works unchanged.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient


@pytest.fixture
def token() -> Callable[..., dict[str, str]]:
    """``token(sub, networks=("ckw",), scope="", **claims)`` -> request headers."""

    def make(sub: str = "user-1", networks: tuple[str, ...] = ("ckw",), scope: str = "",
             expires_in: int = 3600, secret: str = TEST_SECRET, **claims: Any) -> dict[str, str]:
        body: dict[str, Any] = {"sub": sub, "scope": scope, **claims}
        if networks:
            body["organization"] = dso(*networks)
        return {"Authorization": f"Bearer {sign(body, secret, expires_in)}"}

    return make


@pytest.fixture
def service_token() -> Callable[[str], dict[str, str]]:
    def make(scope: str = "grid.read") -> dict[str, str]:
        return {"Authorization": "Bearer " + sign({"sub": "svc-1", "preferred_username": "service-account-dispatch",
                                                   "scope": scope})}

    return make


@pytest.fixture(scope="module")
def published_dir(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("grid_api")
    root = make_settings(data_dir).published_dir
    for network in NETWORKS:
        publish_topology(root, network)
        publish_risk(root, network, local_today())
    return data_dir


@pytest.fixture(scope="module")
def client(published_dir: Path):
    """One app over two published networks (read routes do not change state)."""
    with TestClient(create_app(make_settings(published_dir), config=make_config())) as c:
        yield c


@pytest.fixture
def fresh_app(tmp_path: Path) -> Callable[..., TestClient]:
    """``fresh_app(config=None, state_db_url=None)``: an app over ``tmp_path`` (publish into ``published``)."""
    clients = []

    def make(config: ApiConfig | None = None, state_db_url: str | None = None) -> TestClient:
        c = TestClient(create_app(make_settings(tmp_path, state_db_url), config=config or make_config()))
        clients.append(c.__enter__())
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)
