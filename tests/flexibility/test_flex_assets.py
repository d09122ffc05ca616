"""The Dagster wiring of flexibility, the Dagster-University way: ``dg.materialize`` of the asset
chain with real resources (the meter stand-in on a free port, a tmp DuckDB warehouse, a tmp
SQLite state database, publications in a tmp folder), the suggestions served by the read API
to a participant token, the settlement sensor with ``build_sensor_context``, the reminders
and opportunity sensors against a nudging receiver, the warehouse export and the dbt marts,
and two settlement runs at once on PostgreSQL staying exactly-once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from flex_fixtures import COMMUNITY, TZ

from grid_platform.api.config import ApiConfig
from grid_platform.api.identity import mint_token
from grid_platform.assets import flexibility as fa
from grid_platform.ckw.normalise import normalise_prices
from grid_platform.flexibility import publications
from grid_platform.flexibility.participants import ParticipantRegistry, local_day_bounds
from grid_platform.flexibility.suggestions import build_suggestions
from grid_platform.resources.flexibility import FlexibilityResource
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.sensors import flexibility as fs
from grid_platform.settings import PROJECT_ROOT, load_settings
from grid_platform.standins.ckw import prices_payload
from grid_platform.standins.meters import create_app as meters_app
from grid_platform.standins.server import running
from grid_platform.store import flexibility as store

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient

SIZE, SEED = 24, 2026  # a small demo community: the registry of the resource (FLEX_REGISTRY_SIZE)
DAY = date(2026, 6, 15)  # a June day: PV surplus windows with per-device enrichment
SECRET = "flex-assets-tests-secret-0123456789abcdef"
DBT = Path(sys.executable).with_name("dbt")


@pytest.fixture(scope="module", autouse=True)
def small_registry_env():
    saved = {k: os.environ.get(k) for k in ("FLEX_REGISTRY_SIZE", "FLEX_COMMUNITY_ID", "FLEX_REGISTRY_SEED")}
    os.environ.update(FLEX_REGISTRY_SIZE=str(SIZE), FLEX_COMMUNITY_ID=COMMUNITY, FLEX_REGISTRY_SEED=str(SEED))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def small() -> ParticipantRegistry:
    return ParticipantRegistry.demo({COMMUNITY: SIZE}, SEED)


@pytest.fixture(scope="module")
def meter(small) -> str:
    with running(meters_app(small, tz=TZ)) as url:
        yield url


def _prices(warehouse: Path, days: list[date]) -> None:
    """``raw.ckw_prices`` as the CKW ingestion writes it (stand-in payload -> normaliser)."""
    rows = []
    for day in days:
        start, end = local_day_bounds(day, TZ)
        payload = prices_payload(end, start_timestamp=start.isoformat().replace("+00:00", "Z"),
                                 end_timestamp=end.isoformat().replace("+00:00", "Z"))
        rows += normalise_prices(payload, endpoint="prices", tariff_name="home_dynamic", ingested_at=end)[0]
    con = duckdb.connect(str(warehouse))
    con.execute("create schema if not exists raw")
    con.register("rows", pd.DataFrame(rows))
    con.execute("create or replace table raw.ckw_prices as select * from rows")
    con.close()


@pytest.fixture
def env(tmp_path, meter) -> dict[str, Any]:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    flexibility = FlexibilityResource(meter_api_url=meter, state_db_url=state_url,
                                      published_dir=str(tmp_path / "published"))
    warehouse = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"), pipelines_dir=str(tmp_path / "dlt"))
    return {"flexibility": flexibility, "warehouse": warehouse, "tmp": tmp_path}


def _resources(env: dict[str, Any]) -> dict[str, Any]:
    return {"flexibility": env["flexibility"], "warehouse": env["warehouse"]}


def _window_key(day: date) -> str:
    return str(dg.MultiPartitionKey({"community": COMMUNITY, "date": day.isoformat()}))


def _windows(env: dict[str, Any], *days: date) -> list[dg.ExecuteInProcessResult]:
    _prices(Path(env["warehouse"].path), list(days))
    return [dg.materialize([fa.flex_windows], partition_key=_window_key(day), resources=_resources(env))
            for day in days]


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in
            result.asset_materializations_for_node(f"flexibility__{node}")[0].metadata.items()}


def _commit(sessions, member, start: datetime, hours: int = 2, **extra) -> store.Commitment:
    with sessions.begin() as session:
        return store.create_commitment(session, user_id=member.recipient, suggestion_id=f"w-{start:%d%H}",
                                       community_id=COMMUNITY, device_id=member.device_id, period_start=start,
                                       period_end=start + timedelta(hours=hours), **extra)


def test_windows_and_suggestions_assets(env, small):
    first, _ = _windows(env, DAY, DAY + timedelta(days=1))
    root = env["flexibility"].root
    published = publications.read_windows(root, COMMUNITY, [DAY])
    assert set(published["source"]) >= {"surplus", "price"} and published["device_id"].notna().any()
    # A rerun publishes the same windows (deterministic ids, same content -> same version).
    again = dg.materialize([fa.flex_windows], partition_key=_window_key(DAY), resources=_resources(env))
    meta = _metadata(again, "flex_windows")
    assert meta["publication_version"] == _metadata(first, "flex_windows")["publication_version"]
    assert "| source" in meta["windows"] and meta["dagster/row_count"] == len(published)

    now = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)
    run_config = {"ops": {"flexibility__flex_suggestions": {"config": {"as_of": now.isoformat()}}}}
    result = dg.materialize([fa.flex_suggestions], run_config=run_config, resources=_resources(env))
    meta = _metadata(result, "flex_suggestions")
    assert meta["dagster/row_count"] > 0 and "clock_range" in meta["suggestions"]
    with duckdb.connect(env["warehouse"].path, read_only=True) as con:
        table = con.execute("select * from flexibility.suggestions order by user_id, rank").df()
    # Each participant's rows are what the API's build_suggestions gives that participant.
    windows = publications.read_windows(root, COMMUNITY, [DAY, DAY + timedelta(days=1)])
    for member in small.all_members(COMMUNITY)[:6]:
        expected = build_suggestions(windows, device_id=member.device_id, committed=(), now=now, tz=TZ)
        mine = table[table["user_id"] == member.recipient]
        assert list(mine["id"]) == [e["id"] for e in expected] and len(mine) <= 8
        assert list(mine["clock_range"]) == [e["clock_range"] for e in expected]
    assert (table.groupby("user_id")["rank"].max() <= 8).all()


def test_api_serves_the_demo_suggestions_to_a_participant_token(env, small, monkeypatch):
    """What `make run` gives: today's and tomorrow's windows published, the read API answering a
    participant's token with that participant's suggestions."""
    today = datetime.now(UTC).astimezone(pd.Timestamp.now(tz=TZ).tz).date()
    _windows(env, today, today + timedelta(days=1))
    settings = replace(load_settings(), data_dir=env["tmp"], state_db_url=env["flexibility"].state_db_url)
    from grid_platform.api.app import create_app

    app = create_app(settings, config=ApiConfig(jwt_secret=SECRET, policy_dir=PROJECT_ROOT / "policies"))
    member = next(p for p in small.all_members(COMMUNITY) if p.user_id and p.device_id)
    token = mint_token(member.user_id, scopes="flexibility.read flexibility.write",
                       config=ApiConfig(jwt_secret=SECRET))
    with TestClient(app) as client:
        answer = client.get("/api/suggestions", headers={"Authorization": f"Bearer {token}"})
        assert client.get("/api/suggestions").status_code == 401
    assert answer.status_code == 200
    windows = publications.read_windows(env["flexibility"].root, COMMUNITY, [today, today + timedelta(days=1)])
    expected = build_suggestions(windows, device_id=member.device_id, committed=(), now=datetime.now(UTC), tz=TZ)
    assert [s["id"] for s in answer.json()] == [e["id"] for e in expected]
    assert answer.json(), "no suggestion for today or tomorrow"


def test_settlement_chain_sensor_and_rerun(env, small):
    """device_consumption_hourly -> settlement sensor -> flex_settlement; a rerun (late data) settles nothing twice."""
    flexibility = env["flexibility"]
    sessions = flexibility.sessions
    metered = [p for p in small.all_members(COMMUNITY) if p.device_id]
    start = datetime(2026, 6, 15, 9, tzinfo=UTC)
    inside = [_commit(sessions, p, start) for p in metered[:4]]
    crossing = _commit(sessions, metered[4], datetime(2026, 6, 15, 23, tzinfo=UTC))  # crosses midnight UTC
    with sessions.begin() as session:
        cancelled = _commit(sessions, metered[5], start)
        store.cancel(session, metered[5].recipient, cancelled.id)

    instance = dg.DagsterInstance.ephemeral()
    partition = DAY.isoformat()
    assert dg.materialize([fa.device_consumption_hourly], partition_key=partition, resources=_resources(env),
                          instance=instance).success
    context = dg.build_sensor_context(instance=instance)
    result = fs.flex_settlement_sensor(context)
    assert [r.partition_key for r in result.run_requests] == [partition]
    assert fs.flex_settlement_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor)).skip_message

    run = dg.materialize([fa.flex_settlement], partition_key=partition, resources=_resources(env), instance=instance)
    meta = _metadata(run, "flex_settlement")
    assert meta["settled"] == 4 and meta["selected"] == 4  # the window crossing midnight UTC is not selected
    # The June window crossing midnight is never settled by a day run: stale for the check (> 48 h ago).
    [check] = run.get_asset_check_evaluations()
    assert not check.passed and check.metadata["stale_committed"].value == 1
    with sessions() as session:
        rows = {r.id: r for r in session.scalars(store.select(store.Commitment))}
    assert all(rows[c.id].status == store.SETTLED and rows[c.id].reward_points_actual is not None for c in inside)
    assert rows[crossing.id].status == store.COMMITTED and rows[cancelled.id].status == store.CANCELLED

    # Late data: a re-read triggers another settlement run, which settles nothing twice.
    assert dg.materialize([fa.device_consumption_hourly], partition_key=partition, resources=_resources(env),
                          instance=instance).success
    later = fs.flex_settlement_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
    assert [r.partition_key for r in later.run_requests] == [partition]
    rerun = dg.materialize([fa.flex_settlement], partition_key=partition, resources=_resources(env))
    assert _metadata(rerun, "flex_settlement")["settled"] == 0
    with sessions() as session:
        assert len(store.ledger_entries(session)) == 4


class Receiver:
    """A nudging-tool double on a real port: records every POST."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/admin/{kind}")
        async def receive(kind: str, request: Request) -> dict:
            self.calls.append({"path": kind, "body": json.loads(await request.body())})
            return {"ok": True}


def test_reminders_and_opportunity_sensors(env, small):
    receiver = Receiver()
    with running(receiver.app) as url:
        flexibility = replace_resource(env["flexibility"], nudging_api_url=url)
        member = next(p for p in small.all_members(COMMUNITY) if p.device_id)
        now = datetime.now(UTC)
        _commit(flexibility.sessions, member, now - timedelta(minutes=30))
        for _ in range(2):  # the second tick finds the row already reminded: at most once
            skip = fs.flex_reminders_sensor(dg.build_sensor_context(resources={"flexibility": flexibility}))
            assert "claimed" in skip.skip_message
        assert [c["body"]["event_type"] for c in receiver.calls] == ["flexibility_reminder"]

        instance = dg.DagsterInstance.ephemeral()
        assert dg.materialize([fa.community_forecast], resources={"flexibility": flexibility},
                              instance=instance).success
        tick = fs.flex_opportunity_sensor(dg.build_sensor_context(instance=instance))
        assert len(tick.run_requests) == 1
        assert fs.flex_opportunity_job.execute_in_process(resources={"flexibility": flexibility}).success
        forecast = publications.read_forecast(flexibility.root, COMMUNITY)
        opportunities = [c for c in receiver.calls if c["body"]["event_type"] == "flexibility_opportunity"]
        recipients = {p.recipient for p in small.all_members(COMMUNITY)}
        assert forecast is not None
        # Every member is nudged once when the community has a forecast window, else nobody.
        assert len(opportunities) in (0, len(recipients))
        assert fs.flex_opportunity_job.execute_in_process(resources={"flexibility": flexibility}).success
        assert len([c for c in receiver.calls if c["body"]["event_type"] == "flexibility_opportunity"]) \
            == len(opportunities)


def replace_resource(resource: FlexibilityResource, **fields: Any) -> FlexibilityResource:
    return FlexibilityResource(**{**resource.model_dump(), **fields})


@pytest.mark.slow
def test_scoring_export_and_dbt_marts(env, small):
    flexibility = env["flexibility"]
    member = next(p for p in small.all_members(COMMUNITY) if p.device_id)
    row = _commit(flexibility.sessions, member, datetime(2026, 6, 15, 9, tzinfo=UTC))
    store.settle_one(flexibility.sessions, row.id, reward_points_actual=7, actual_kwh=0.7,
                     now=datetime(2026, 6, 16, tzinfo=UTC))
    scoring = dg.materialize([fa.flex_scoring], partition_key=_window_key(DAY), resources=_resources(env))
    metered = {p.recipient for p in small.all_members(COMMUNITY) if p.device_id}
    assert _metadata(scoring, "flex_scoring")["dagster/row_count"] == len(metered)  # one daily row per meter
    assert dg.materialize([fa.flexibility_warehouse_export], resources=_resources(env)).success

    warehouse = Path(env["warehouse"].path)
    target = env["tmp"] / "dbt"
    proc = subprocess.run(
        [str(DBT), "build", "--select", "path:models/staging/flexibility", "path:models/marts/flexibility",
         "--project-dir", str(PROJECT_ROOT / "dbt_project"), "--profiles-dir", str(PROJECT_ROOT / "dbt_project"),
         "--target-path", str(target / "target"), "--log-path", str(target / "logs")],
        env=dict(os.environ, GRID_WAREHOUSE=str(warehouse), DBT_SEND_ANONYMOUS_USAGE_STATS="false"),
        cwd=env["tmp"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        daily = con.execute("select local_date, settled_commitments, settled_kwh, settled_points, daily_points "
                            "from main.flexibility_daily_by_community").fetchall()
        board = con.execute("select count(*), min(season_rank), min(level) from main.flexibility_leaderboard").fetchone()
    assert daily[0][:4] == (DAY, 1, 0.7, 7) and daily[0][4] > 0
    assert board == (recipients(small), 1, 1)


def recipients(small: ParticipantRegistry) -> int:
    return len({p.recipient for p in small.all_members(COMMUNITY)})


@pytest.mark.slow
def test_two_settlement_runs_at_once_on_postgresql(tmp_path, meter, small, pg_database, monkeypatch):
    """Two flex_settlement runs of the same day, started together on PostgreSQL, small batches so
    they interleave: every commitment is settled by exactly one of them."""
    monkeypatch.setenv("FLEX_SETTLEMENT_BATCH", "50")
    flexibility = FlexibilityResource(meter_api_url=meter, state_db_url=pg_database,
                                      published_dir=str(tmp_path / "published"))
    warehouse = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"), pipelines_dir=str(tmp_path / "dlt"))
    resources = {"flexibility": flexibility, "warehouse": warehouse}
    metered = [p for p in small.all_members(COMMUNITY) if p.device_id]
    rows = [{"user_id": p.recipient, "suggestion_id": f"w{h}", "community_id": COMMUNITY, "device_id": p.device_id,
             "period_start": datetime(2026, 6, 15, h, tzinfo=UTC),
             "period_end": datetime(2026, 6, 15, h + 1, tzinfo=UTC)} for p in metered for h in range(23)]
    with flexibility.sessions.begin() as session:
        session.execute(store.Commitment.__table__.insert(), [{"id": store.uuid.uuid4(), **r} for r in rows])
    assert dg.materialize([fa.device_consumption_hourly], partition_key=DAY.isoformat(), resources=resources).success

    results: list[Any] = [None, None]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = dg.materialize([fa.flex_settlement], partition_key=DAY.isoformat(), resources=resources)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    settled = [_metadata(r, "flex_settlement")["settled"] for r in results]
    assert sum(settled) == len(rows)
    with flexibility.sessions() as session:
        ledger = store.ledger_entries(session)
        statuses = set(session.scalars(store.select(store.Commitment.status)))
    assert len(ledger) == len(rows) == len({e.commitment_id for e in ledger}) and statuses == {store.SETTLED}
    assert {e.run_id for e in ledger} <= {r.run_id for r in results}
