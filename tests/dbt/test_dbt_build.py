"""`dbt build` of dbt_project/ against a DuckDB warehouse holding dlt-shaped raw CKW tables.

The raw rows are built from the CKW reference examples (data/ckw/...: price levels, TRA signals, the
Lutersarni reading) and cover a spring and an autumn DST day, retries, a transport error, a 429,
a deferred call, a reject and a failure older than the 24 h window. The run is pinned with
--vars as_of so every window is reproducible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT = PROJECT_ROOT / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
CKW_EXAMPLES = Path("/work/shared/data/ckw/e-ckw-public-data-1.0.23-raml/examples")

ZURICH = ZoneInfo("Europe/Zurich")
AS_OF = datetime(2026, 10, 26, 9, 0, tzinfo=UTC)  # 10:00 CET, local date 2026-10-26

PRICES_PATH = "/v1/netzinformationen/energie/dynamische-preise"
PLANT_PATH = "/v1/netzinformationen/kraftwerke/lutersarni/live"
TRA_PATH = "/v1/netzinformationen/trasignale/{datum}"

RAW_DDL = """
create schema raw;
create table raw.ckw_prices (
    slot_start timestamptz, slot_end timestamptz, tariff_name varchar, tariff_type varchar,
    unit varchar, value decimal(10,6), publication_ts timestamptz, ingested_at timestamptz,
    _dlt_load_id varchar not null, _dlt_id varchar not null);
create table raw.ckw_tra_signals (
    signal_name varchar, description varchar, signal_date date, start_ts timestamptz,
    end_ts timestamptz, ingested_at timestamptz, _dlt_load_id varchar not null, _dlt_id varchar not null);
create table raw.ckw_plant_status (
    plant_id varchar, reading_ts timestamptz, operational_status varchar, voltage_kv double,
    active_power_mw double, reactive_power_mvar double, wind_speed_kmh double, raw_payload varchar,
    ingested_at timestamptz, _dlt_load_id varchar not null, _dlt_id varchar not null);
create table raw.ckw_api_health_log (
    run_id varchar, endpoint varchar, call_seq bigint, attempt bigint, request varchar,
    checked_at timestamptz, status_code bigint, response_time_ms bigint, success boolean,
    error_message varchar, outcome varchar, ratelimit_limit bigint, ratelimit_remaining bigint,
    ratelimit_reset bigint, _dlt_load_id varchar not null, _dlt_id varchar not null);
create table raw.ckw_rejects (
    run_id varchar, endpoint varchar, record_hash varchar, rejected_at timestamptz, reason varchar,
    record varchar, _dlt_load_id varchar not null, _dlt_id varchar not null);
"""


def _load(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    frame["_dlt_load_id"] = "1761469200.0"
    frame["_dlt_id"] = [f"{table}-{i}" for i in range(len(frame))]
    con.register("frame", frame)
    columns = ", ".join(frame.columns)
    con.execute(f"insert into raw.{table} ({columns}) select {columns} from frame")
    con.unregister("frame")


def _local_day_slots(day: date) -> list[datetime]:
    """Quarter-hour slot starts (UTC) of a local day, stepped in UTC so DST days get 92/100 slots."""
    start = datetime(day.year, day.month, day.day, tzinfo=ZURICH).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=ZURICH).astimezone(UTC)
    return [start + timedelta(minutes=15 * i) for i in range(int((end - start).total_seconds() // 900))]


def _grid_levels() -> list[float]:
    """Grid price levels of the reference examples (RAML example plus the two live samples)."""
    levels = {0.1074, 0.1363}  # observed live samples, 2026-07-21 and 2026-09-28
    example = json.loads((CKW_EXAMPLES / "example_energyprices.json").read_text())
    levels |= {slot["grid"][0]["value"] for slot in example["prices"]}
    return sorted(levels)


def _grid_price(local_hour: int) -> float:
    # Cheap nights, dearer days, an evening peak at 0.21 so integrated (0.33) and grid land in all bands.
    low, mid_low, mid, high = _grid_levels()
    if local_hour < 6:
        return low
    if local_hour < 11:
        return high
    if local_hour < 17:
        return mid_low
    if local_hour < 21:
        return 0.21
    return mid


def _price_rows(tariff_name: str, day: date, slot_limit: int | None = None) -> list[dict]:
    publication = datetime(day.year, day.month, day.day, 11, 19, 17, tzinfo=ZURICH) - timedelta(days=1)
    rows = []
    for slot_start in _local_day_slots(day)[:slot_limit]:
        grid = _grid_price(slot_start.astimezone(ZURICH).hour)
        # Constant offsets of the reference data: electricity 0.12 flat, grid_usage = grid - 0.0303.
        values = {"grid": grid, "electricity": 0.12, "integrated": grid + 0.12, "grid_usage": grid - 0.0303}
        for tariff_type, value in values.items():
            rows.append(
                {
                    "slot_start": slot_start,
                    "slot_end": slot_start + timedelta(minutes=15),
                    "tariff_name": tariff_name,
                    "tariff_type": tariff_type,
                    "unit": "CHF_kWh",
                    "value": round(value, 6),
                    "publication_ts": publication.astimezone(UTC),
                    "ingested_at": publication.astimezone(UTC) + timedelta(minutes=5),
                }
            )
    return rows


def _tra_rows(day: date) -> list[dict]:
    """The example TRA signals moved to `day`, wall clock kept, zone resolved for that day."""
    rows = []
    for signal in json.loads((CKW_EXAMPLES / "example_trasignale.json").read_text()):
        start = datetime.fromisoformat(signal["Start"]).replace(day.year, day.month, day.day, tzinfo=ZURICH)
        end = datetime.fromisoformat(signal["End"]).replace(day.year, day.month, day.day, tzinfo=ZURICH)
        rows.append(
            {
                "signal_name": signal["Name"],
                "description": signal["Description"],
                "signal_date": day,
                "start_ts": start.astimezone(UTC),
                "end_ts": end.astimezone(UTC),
                "ingested_at": datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC),
            }
        )
    return rows


def _plant_rows() -> list[dict]:
    example = json.loads((CKW_EXAMPLES / "example_lutersarni_live.json").read_text())
    # (reading time UTC, active power MW, voltage kV, wind km/h); the 09:10 reading is after as_of.
    readings = [
        (
            datetime(2026, 10, 26, 8, 40, tzinfo=UTC),
            float(example["wirkleistung"]),
            float(example["spannung"]),
            float(example["windgeschwindigkeit"]),
        ),
        (datetime(2026, 10, 26, 8, 45, tzinfo=UTC), 0.01, 20.4, 8.5),
        (datetime(2026, 10, 26, 8, 55, tzinfo=UTC), 0.03, 22.4, 31.0),
        (datetime(2026, 10, 26, 9, 10, tzinfo=UTC), 0.12, 20.9, 41.0),
    ]
    rows = []
    for reading_ts, power, voltage, wind in readings:
        payload = dict(
            example,
            zeitstempel=reading_ts.astimezone(ZURICH).isoformat(timespec="minutes"),
            wirkleistung=str(power),
            spannung=str(voltage),
            windgeschwindigkeit=str(wind),
        )
        rows.append(
            {
                "plant_id": "lutersarni",
                "reading_ts": reading_ts,
                "operational_status": example["betriebsstatus"],
                "voltage_kv": voltage,
                "active_power_mw": power,
                "reactive_power_mvar": float(example["blindleistung"]),
                "wind_speed_kmh": wind,
                "raw_payload": json.dumps(payload),
                "ingested_at": reading_ts + timedelta(seconds=20),
            }
        )
    return rows


@dataclass(frozen=True)
class Attempt:
    run_id: str
    endpoint: str
    call_seq: int
    attempt: int
    request: str
    checked_at: datetime
    status_code: int | None
    response_time_ms: int
    outcome: str
    error_message: str | None = None
    ratelimit_remaining: int | None = None


def _attempts() -> list[Attempt]:
    prices_req = f"{PRICES_PATH}?tariff_name=home_dynamic&start_timestamp=2026-10-25T23:00Z&end_timestamp=2026-10-27T23:00Z"
    tra = "/v1/netzinformationen/trasignale/"
    at = lambda h, m, s=0: datetime(2026, 10, 26, h, m, s, tzinfo=UTC)
    return [
        # A failure older than the 24 h window: must not count anywhere.
        Attempt(
            "r0",
            PRICES_PATH,
            1,
            1,
            prices_req,
            datetime(2026, 10, 24, 12, 0, tzinfo=UTC),
            500,
            45,
            "http_error",
            "Error 500 Internal Server Error",
        ),
        Attempt(
            "r0", PLANT_PATH, 1, 1, PLANT_PATH, datetime(2026, 10, 24, 12, 0, 1, tzinfo=UTC), 200, 82, "ok"
        ),
        Attempt("r1", PRICES_PATH, 1, 1, prices_req, at(7, 0), 200, 120, "ok", ratelimit_remaining=3),
        Attempt("r1", PLANT_PATH, 1, 1, PLANT_PATH, at(7, 0, 1), 200, 80, "ok"),
        Attempt("r1", TRA_PATH, 1, 1, tra + "2026-10-25", at(7, 0, 2), 200, 95, "ok"),
        # 503, retried after 5 s; the plant call times out once, then succeeds.
        Attempt(
            "r2",
            PRICES_PATH,
            1,
            1,
            prices_req,
            at(7, 5),
            503,
            40,
            "http_error",
            "Error 503 Service Unavailable",
            ratelimit_remaining=2,
        ),
        Attempt("r2", PRICES_PATH, 1, 2, prices_req, at(7, 5, 5), 200, 130, "ok", ratelimit_remaining=1),
        Attempt(
            "r2",
            PLANT_PATH,
            1,
            1,
            PLANT_PATH,
            at(7, 5, 6),
            None,
            30000,
            "transport_error",
            "ReadTimeout: timed out after 30 s",
        ),
        Attempt("r2", PLANT_PATH, 1, 2, PLANT_PATH, at(7, 5, 41), 200, 85, "ok"),
        Attempt("r2", TRA_PATH, 1, 1, tra + "2026-10-25", at(7, 5, 42), 200, 140, "ok"),
        # 429: not retried within the cycle.
        Attempt(
            "r3",
            PRICES_PATH,
            1,
            1,
            prices_req,
            at(8, 0),
            429,
            60,
            "rate_limited",
            "Error 429 Too Many Requests",
            ratelimit_remaining=0,
        ),
        Attempt("r3", PLANT_PATH, 1, 1, PLANT_PATH, at(8, 0, 1), 200, 70, "ok"),
        Attempt("r3", TRA_PATH, 1, 1, tra + "2026-10-25", at(8, 0, 2), 200, 160, "ok"),
        # Rate-limit budget exhausted: the prices call is deferred, never sent.
        Attempt(
            "r4",
            PRICES_PATH,
            1,
            1,
            prices_req,
            at(8, 5),
            None,
            0,
            "deferred",
            "deferred: x-ratelimit-remaining 0, reset pending",
        ),
        Attempt("r4", PLANT_PATH, 1, 1, PLANT_PATH, at(8, 5, 1), 200, 75, "ok"),
        Attempt("r4", TRA_PATH, 1, 1, tra + "2026-10-24", at(8, 5, 2), 200, 150, "ok"),
        Attempt("r4", TRA_PATH, 2, 1, tra + "2026-10-25", at(8, 5, 3), 200, 155, "ok"),
    ]


def _health_rows() -> list[dict]:
    rows = []
    for a in _attempts():
        headers = a.endpoint == PRICES_PATH and a.ratelimit_remaining is not None
        rows.append(
            {
                "run_id": a.run_id,
                "endpoint": a.endpoint,
                "call_seq": a.call_seq,
                "attempt": a.attempt,
                "request": a.request,
                "checked_at": a.checked_at,
                "status_code": a.status_code,
                "response_time_ms": a.response_time_ms,
                "success": a.outcome == "ok",
                "error_message": a.error_message,
                "outcome": a.outcome,
                "ratelimit_limit": 4 if headers else None,
                "ratelimit_remaining": a.ratelimit_remaining if headers else None,
                "ratelimit_reset": 999_000 if headers else None,
            }
        )
    return rows


def _reject_rows() -> list[dict]:
    record = {"zeitstempel": "2026-10-26T08:05+01:00", "betriebsstatus": "in Betrieb", "wirkleistung": "n/a"}
    return [
        {
            "run_id": "r4",
            "endpoint": PLANT_PATH,
            "record_hash": "5f1c0e7a",
            "rejected_at": datetime(2026, 10, 26, 8, 5, 1, tzinfo=UTC),
            "reason": "wirkleistung is not a number",
            "record": json.dumps(record),
        }
    ]


def build_raw_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute(RAW_DDL)
        _load(
            con,
            "ckw_prices",
            _price_rows("home_dynamic", date(2026, 3, 29))
            + _price_rows("home_dynamic", date(2026, 10, 25))
            + _price_rows("home_dynamic", date(2026, 10, 26))
            + _price_rows("business_dynamic", date(2026, 10, 26), slot_limit=8),
        )
        _load(con, "ckw_tra_signals", _tra_rows(date(2026, 10, 24)) + _tra_rows(date(2026, 10, 25)))
        _load(con, "ckw_plant_status", _plant_rows())
        _load(con, "ckw_api_health_log", _health_rows())
        _load(con, "ckw_rejects", _reject_rows())
    finally:
        con.close()


@dataclass(frozen=True)
class Build:
    warehouse: Path
    run_results: dict
    seconds: float


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    tmp = tmp_path_factory.mktemp("dbt")
    warehouse = tmp / "warehouse.duckdb"
    build_raw_warehouse(warehouse)
    env = dict(os.environ, GRID_WAREHOUSE=str(warehouse), DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    started = time.perf_counter()
    proc = subprocess.run(
        [
            str(DBT),
            "build",
            # The CKW models over the CKW fixture; each other domain's models are built by its own tests.
            "--select",
            "config.meta.dagster.group:ckw_bi",
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(tmp / "target"),
            "--log-path",
            str(tmp / "logs"),
            "--vars",
            json.dumps({"as_of": AS_OF.isoformat()}),
        ],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    run_results = json.loads((tmp / "target" / "run_results.json").read_text())
    return Build(warehouse, run_results, seconds)


def _query(build: Build, sql: str) -> list[tuple]:
    con = duckdb.connect(str(build.warehouse), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql).fetchall()
    finally:
        con.close()


pytestmark = pytest.mark.slow


def test_every_node_passes_without_warnings(build: Build) -> None:
    statuses = {r["unique_id"]: r["status"] for r in build.run_results["results"]}
    kinds = {uid.split(".")[0] for uid in statuses}
    assert {"model", "test", "unit_test"} <= kinds
    assert sum(uid.startswith("model.") for uid in statuses) == 16
    assert sum(uid.startswith("unit_test.") for uid in statuses) == 5
    # The reject's run has health rows, so even the warn-severity relationship passes.
    assert {s for s in statuses.values()} == {"success", "pass"}, statuses


def test_expected_slot_counts_follow_dst(build: Build) -> None:
    rows = _query(
        build,
        """
        select local_date, slot_count, expected_slot_count, is_complete
        from ckw_tariff_comparison_daily
        where tariff_name = 'home_dynamic' and tariff_type = 'integrated' order by local_date""",
    )
    assert rows == [
        (date(2026, 3, 29), 92, 92, True),
        (date(2026, 10, 25), 100, 100, True),
        (date(2026, 10, 26), 96, 96, True),
    ]
    partial = _query(
        build,
        """
        select slot_count, expected_slot_count, is_complete from ckw_tariff_comparison_daily
        where tariff_name = 'business_dynamic' and tariff_type = 'grid'""",
    )
    assert partial == [(8, 96, False)]


def test_tariff_comparison_range(build: Build) -> None:
    (row,) = _query(
        build,
        """
        select min_chf_kwh, max_chf_kwh from ckw_tariff_comparison_daily
        where local_date = date '2026-10-26' and tariff_name = 'home_dynamic' and tariff_type = 'integrated'""",
    )
    assert row == pytest.approx((0.1074 + 0.12, 0.21 + 0.12))


def test_prices_pivot_and_bands(build: Build) -> None:
    # 18:00 local on 2026-10-26 is the evening peak: grid 0.21 (red), integrated 0.33 (yellow).
    (row,) = _query(
        build,
        """
        select grid_chf_kwh, electricity_chf_kwh, integrated_chf_kwh, grid_usage_chf_kwh,
               grid_band, electricity_band, integrated_band
        from ckw_prices_quarter_hourly
        where tariff_name = 'home_dynamic' and slot_start_local = timestamp '2026-10-26 18:00'""",
    )
    assert row[:4] == pytest.approx((0.21, 0.12, 0.33, 0.21 - 0.0303))
    assert row[4:] == ("red", "yellow", "yellow")
    (count,) = _query(build, "select count(*) from ckw_prices_quarter_hourly")
    assert count == (92 + 100 + 96 + 8,)


def test_health_score_windowed_and_excluding_deferred(build: Build) -> None:
    rows = _query(
        build,
        """
        select hour_start, attempts, successful_attempts, deferred_calls, health_score_pct, health_band
        from ckw_api_health_score_hourly order by hour_start""",
    )
    assert [r[:4] for r in rows] == [
        (datetime(2026, 10, 26, 7, tzinfo=UTC), 8, 6, 0),
        (datetime(2026, 10, 26, 8, tzinfo=UTC), 6, 5, 1),
    ]
    assert [r[4] for r in rows] == pytest.approx([75.0, 500 / 6])
    assert [r[5] for r in rows] == ["red", "red"]
    # The gauge's 24 h value: 11 successes of 14 sent attempts; r0's failure is outside the window.
    (gauge,) = _query(
        build, "select sum(successful_attempts), sum(attempts) from ckw_api_health_score_hourly"
    )
    assert gauge == (11, 14)
    # Both hours are red, so both are alert rows, newest first.
    alerts = _query(build, "select alert_hour_start, alert_type, message from ckw_api_health_alerts")
    assert [a[0] for a in alerts] == [datetime(2026, 10, 26, 8, tzinfo=UTC), datetime(2026, 10, 26, 7, tzinfo=UTC)]
    assert alerts[1][1] == "api_health_score_below_threshold" and "2 of 8 attempts failed" in alerts[1][2]


def test_health_by_endpoint_and_latency(build: Build) -> None:
    rows = {
        r[0]: r[1:]
        for r in _query(
            build,
            """
        select endpoint, attempts, successes, deferred_calls, success_rate_pct, avg_response_time_ms,
               last_checked_at, last_outcome, last_status_code
        from ckw_api_health_by_endpoint_24h""",
        )
    }
    assert rows[PRICES_PATH] == (
        4,
        2,
        1,
        50.0,
        87.5,
        datetime(2026, 10, 26, 8, 0, tzinfo=UTC),
        "rate_limited",
        429,
    )
    assert rows[PLANT_PATH][:4] == (5, 4, 0, 80.0)
    assert rows[PLANT_PATH][4] == pytest.approx((80 + 30000 + 85 + 70 + 75) / 5)
    assert rows[TRA_PATH][:5] == (5, 5, 0, 100.0, 140.0)
    bands = dict(_query(build, "select endpoint, latency_band from ckw_api_latency_by_endpoint_24h"))
    assert bands == {PRICES_PATH: "green", TRA_PATH: "yellow", PLANT_PATH: "red"}


def test_recent_alerts_newest_first(build: Build) -> None:
    rows = _query(
        build,
        """
        select alert_rank, checked_at, endpoint, status_code, outcome, error_message
        from ckw_api_recent_alerts order by alert_rank""",
    )
    assert rows == [
        (
            1,
            datetime(2026, 10, 26, 8, 0, tzinfo=UTC),
            PRICES_PATH,
            429,
            "rate_limited",
            "Error 429 Too Many Requests",
        ),
        (
            2,
            datetime(2026, 10, 26, 7, 5, 6, tzinfo=UTC),
            PLANT_PATH,
            None,
            "transport_error",
            "ReadTimeout: timed out after 30 s",
        ),
        (
            3,
            datetime(2026, 10, 26, 7, 5, tzinfo=UTC),
            PRICES_PATH,
            503,
            "http_error",
            "Error 503 Service Unavailable",
        ),
    ]


def test_tra_today_falls_back_to_latest_date(build: Build) -> None:
    rows = _query(
        build,
        """
        select signal_name, shown_date, today_local, is_fallback, start_local, end_local, duration_minutes
        from ckw_tra_signals_today order by signal_name""",
    )
    assert [r[:4] for r in rows] == [
        (name, date(2026, 10, 25), date(2026, 10, 26), True) for name in ("000R", "001R", "002R")
    ]
    # 001R starts at 02:23 summer time, before the clocks go back at 03:00: 4 h 05 on the wall clock
    # are 5 h 05 of real time.
    assert rows[1][4:] == (datetime(2026, 10, 25, 2, 23), datetime(2026, 10, 25, 6, 28), 305.0)
    assert rows[0][6] == 211.0


def test_plant_status_latest_at_as_of(build: Build) -> None:
    (row,) = _query(
        build,
        """
        select reading_ts, reading_age_minutes, operational_status, is_running, active_power_band,
               voltage_band, wind_band, reactive_power_mvar
        from ckw_plant_status_latest""",
    )
    assert row == (
        datetime(2026, 10, 26, 8, 55, tzinfo=UTC),
        5.0,
        "in Betrieb",
        True,
        "yellow",
        "yellow",
        "fresh",
        -0.02,
    )
    history = _query(
        build, "select active_power_band from ckw_plant_active_power_history order by reading_ts"
    )
    assert [b for (b,) in history] == ["green", "red", "yellow", "green"]


def test_latest_prices(build: Build) -> None:
    rows = {
        r[0]: r[1:]
        for r in _query(
            build,
            """
        select tariff_type, current_slot_start, current_value_chf_kwh, latest_slot_end_local
        from ckw_prices_latest where tariff_name = 'home_dynamic'""",
        )
    }
    assert set(rows) == {"grid", "electricity", "integrated", "grid_usage"}
    # as_of is 10:00 local, a morning slot (grid at the example's 0.1635).
    assert rows["integrated"][0] == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert rows["integrated"][1] == pytest.approx(0.1635 + 0.12)
    assert rows["grid"][2] == datetime(2026, 10, 27, 0, 0)


def test_build_is_quick(build: Build) -> None:
    assert build.seconds < 60, f"dbt build took {build.seconds:.1f} s"
