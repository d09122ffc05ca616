"""Builders for the alert tests: rules, tratta rows, published risk_km, databases.

Published ``risk_km`` tables are produced by the risk domain's own ``risk_km`` from
fragment-day rows, so dispatch reads exactly the shape the risk assets publish.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from grid_platform.alerts import mqtt
from grid_platform.alerts.nudging import verify_signature
from grid_platform.publish import Publication, publish
from grid_platform.risk.config import load_config
from grid_platform.risk.tables import risk_km
from grid_platform.store.db import make_engine, session_factory

PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
MQTT_URL = os.environ.get("GRID_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


@contextmanager
def mqtt_consumer(prefix: str) -> Iterator[str]:
    """A fresh persistent-session client id on the test broker, its session forgotten afterwards."""
    broker = mqtt.parse_mqtt_url(MQTT_URL)
    try:
        socket.create_connection((broker.host, broker.port), timeout=2).close()
    except OSError:
        pytest.skip(f"no MQTT broker at {MQTT_URL}")
    client_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    yield client_id
    mqtt.forget_session(MQTT_URL, client_id)


@dataclass
class Rule:
    """Stands for an ``AlertRule`` in the pure report tests."""

    user_id: str
    risk_types: list[str]
    threshold: str
    recipients: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


def tratta(day: str, vector: str, unit: str | None, line: str | None, total: Any, alert: Any, warning: Any,
           worst: str | None = None, level: str = "tratta") -> dict[str, Any]:
    return {"date": day, "risk_vector": vector, "level": level, "operational_unit": unit, "line_name": line,
            "km_total": total, "km_alert": alert, "km_warning": warning, "worst_level": worst}


def fragment_day(day: str, vector: str, unit: str, line: str, length_m: float, level: str | None,
                 network: str = "ckw") -> dict[str, Any]:
    """A fragment-day row as the risk pipeline assesses it (one tratta per line and unit)."""
    return {"date": pd.Timestamp(day), "risk_vector": vector, "dso_id": network, "operational_unit": unit,
            "line_name": line, "municipality": unit, "conductor_type": "overhead_bare",
            "segment_id": f"{network}-{line}-{unit}", "parent_substation_name": "UW " + unit, "feeder_id": "F1",
            "length_m": length_m, "risk_level": level, "escalated_by_tree_strike": False,
            "escalated_by_thermal": False, "strike_tree_tier": None, "thermal_tier": None,
            "gust_excess": 4.0, "temp_max_c": 31.0}


def publish_risk_km(published_root: Path, network: str, fragments: list[dict[str, Any]]) -> Publication:
    """Publish ``risk/<network>`` with the risk_km table the risk domain computes from ``fragments``."""
    table = risk_km(pd.DataFrame(fragments), load_config())

    def write(directory: Path) -> None:
        table.to_parquet(directory / "risk_km.parquet", index=False)

    return publish(published_root, "risk", network, write)


def sessions_for(url: str) -> Iterator[sessionmaker]:
    """A session factory on ``url`` (one loop turn: ``for sessions in sessions_for(url)``), engine disposed after."""
    engine = make_engine(url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def _pg_admin(url: str) -> psycopg.Connection:
    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                           dbname=u.database, autocommit=True, connect_timeout=3)


def pg_reachable(url: str = PG_URL) -> str | None:
    """None when PostgreSQL answers, else the reason."""
    try:
        _pg_admin(url).close()
    except psycopg.OperationalError as exc:
        return str(exc)
    return None


@contextmanager
def pg_database(url: str = PG_URL) -> Iterator[str]:
    """A fresh PostgreSQL database (created, yielded as URL, dropped)."""
    name = f"grid_alerts_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin(url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with _pg_admin(url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def webhook_receiver(secret: str) -> FastAPI:
    """A subscriber endpoint: checks the signature, answers 401 when it does not verify."""
    app = FastAPI()
    app.state.received = []

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        raw = await request.body()
        valid = verify_signature(secret, raw, request.headers.get("x-grid-timestamp"),
                                 request.headers.get("x-grid-signature"))
        app.state.received.append({"valid": valid, "body": json.loads(raw),
                                   "idempotency_key": request.headers.get("idempotency-key")})
        return Response(status_code=204 if valid else 401)

    return app
