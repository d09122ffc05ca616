"""CKW ingestion end to end: the real stand-in over HTTP, dlt into a temporary DuckDB warehouse,
the Dagster assets and their checks."""

from datetime import date, timedelta

import dagster as dg
import duckdb
import httpx
import pytest
from dagster_dlt import DagsterDltResource

from grid_platform.assets.ckw import (
    ckw_checks,
    ckw_ingest_log_assets,
    ckw_plant_assets,
    ckw_price_assets,
    ckw_tra_assets,
)
from grid_platform.ckw.windows import expected_slots
from grid_platform.resources.ckw import CkwApiResource
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.standins import ckw as ckw_standin
from grid_platform.standins.server import running

TZ = "Europe/Zurich"
TODAY = date.today()


@pytest.fixture
def standin():
    app = ckw_standin.create_app(today=lambda: TODAY)
    with running(app) as url:
        yield url


@pytest.fixture
def resources(tmp_path, standin):
    return {
        "warehouse": WarehouseResource(path=str(tmp_path / "warehouse.duckdb"), pipelines_dir=str(tmp_path / "dlt")),
        "ckw": CkwApiResource(base_url=standin + "/api", spool_dir=str(tmp_path / "spool"), backoff_base_s=0.01,
                              timeout_s=5),
        "dlt": DagsterDltResource(),
    }


def day_range(first: date, last: date) -> dict:
    return {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}


def materialize(assets, resources, **kwargs):
    return dg.materialize(assets, resources=resources, raise_on_error=False, **kwargs)


def count(resources, sql: str) -> int:
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_price_range_over_dst_lands_complete_and_reruns_change_nothing(resources):
    first, last = date(2026, 10, 20), date(2026, 10, 27)  # includes the 100-slot day 2026-10-25
    result = materialize([ckw_price_assets], resources, tags=day_range(first, last))
    assert result.success
    expected = sum(expected_slots(first + timedelta(days=i), TZ) for i in range((last - first).days + 1)) * 4 * 2
    assert count(resources, "select count(*) from raw.ckw_prices") == expected
    per_day = dict(duckdb.connect(resources["warehouse"].path, read_only=True).execute(
        "select timezone('Europe/Zurich', slot_start)::date, count(*) from raw.ckw_prices "
        "where tariff_type = 'integrated' and tariff_name = 'home_dynamic' group by 1").fetchall())
    assert per_day[date(2026, 10, 25)] == 100 and per_day[date(2026, 10, 24)] == 96

    # The same range again, and an overlapping one, add no rows.
    assert materialize([ckw_price_assets], resources, tags=day_range(first, last)).success
    assert materialize([ckw_price_assets], resources, tags=day_range(date(2026, 10, 24), date(2026, 10, 29))).success
    extra = sum(expected_slots(date(2026, 10, 28) + timedelta(days=i), TZ) for i in range(2)) * 4 * 2
    assert count(resources, "select count(*) from raw.ckw_prices") == expected + extra
    assert count(resources, "select count(*) - count(distinct (slot_start, tariff_type, tariff_name)) "
                            "from raw.ckw_prices") == 0


@pytest.mark.slow
def test_a_year_backfill_is_split_into_api_windows(resources):
    first, last = date(2025, 1, 1), date(2025, 12, 31)
    result = materialize([ckw_price_assets], resources, tags=day_range(first, last))
    assert result.success
    days = (last - first).days + 1
    assert count(resources, "select count(distinct timezone('Europe/Zurich', slot_start)::date) "
                            "from raw.ckw_prices") == days
    # 13 windows of at most 30 days per tariff name, each one call.
    mat = result.asset_materializations_for_node("ckw_price_ingest")[0]
    assert mat.metadata["api_calls"].value == 26


def test_tra_plant_and_ingest_log_with_checks(resources):
    yesterday = TODAY - timedelta(days=1)
    assert materialize([ckw_tra_assets], resources, tags=day_range(yesterday - timedelta(days=2), yesterday)).success
    assert materialize([ckw_plant_assets], resources).success
    assert materialize([ckw_plant_assets], resources).success  # same reading: no new row
    assert count(resources, "select count(*) from raw.ckw_plant_status") == 1
    tra_rows = count(resources, "select count(*) from raw.ckw_tra_signals")
    assert tra_rows >= 9
    assert materialize([ckw_tra_assets], resources, tags=day_range(yesterday, yesterday)).success
    assert count(resources, "select count(*) from raw.ckw_tra_signals") == tra_rows

    result = materialize([ckw_ingest_log_assets], resources)
    assert result.success
    assert count(resources, "select count(*) from raw.ckw_api_health_log") == 3 + 2 + 1
    assert count(resources, "select count(*) from raw.ckw_rejects") == 0  # created even when empty
    # Loading the (now empty) spool again changes nothing.
    assert materialize([ckw_ingest_log_assets], resources).success
    assert count(resources, "select count(*) from raw.ckw_api_health_log") == 6


def run_checks(resources) -> dict[str, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [dg.AssetSpec(k) for k in ("ckw_prices", "ckw_tra_signals", "ckw_plant_status", "ckw_api_health_log",
                                    "ckw_rejects")] + ckw_checks,
        resources=resources, selection=dg.AssetSelection.all_asset_checks(), raise_on_error=False)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.mark.slow
def test_faults_lose_no_good_data_and_every_attempt_is_logged(resources, standin):
    faults = {"error_rate": 0.3, "burst_429": 2, "burst_every": 20, "burst_reset_ms": 10, "malformed_rate": 0.05,
              "truncated_rate": 0.05, "seed": 3}
    assert httpx.put(standin + "/_standin/faults", json=faults).status_code == 200
    last = TODAY - timedelta(days=1)
    first = last - timedelta(days=29)
    tra = materialize([ckw_tra_assets], resources, tags=day_range(first, last))  # 30 calls
    prices = materialize([ckw_price_assets], resources, tags=day_range(first, last))
    plant = materialize([ckw_plant_assets], resources)
    assert materialize([ckw_ingest_log_assets], resources).success
    stats = httpx.get(standin + "/_standin/stats").json()
    outcomes = stats["by_outcome"]
    assert outcomes.get("fault_5xx", 0) > 5 and outcomes.get("fault_429", 0) > 0
    assert outcomes.get("fault_malformed", 0) + outcomes.get("fault_truncated", 0) > 0

    # Every attempt the stand-in saw is a row of the health log, failures included.
    assert count(resources, "select count(*) from raw.ckw_api_health_log") == stats["requests"]
    assert count(resources, "select count(*) from raw.ckw_api_health_log where not success") == \
        stats["requests"] - outcomes["ok"]
    assert count(resources, "select count(*) from raw.ckw_rejects") >= \
        outcomes.get("fault_malformed", 0) + outcomes.get("fault_truncated", 0)

    # All good data landed: every TRA date whose call succeeded has exactly the signals the
    # service serves for it; a date whose call failed on every attempt is named in the failure.
    httpx.post(standin + "/_standin/reset")
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        stored = dict(con.execute("select signal_date, count(*) from raw.ckw_tra_signals group by 1").fetchall())
        exhausted = [r[0] for r in con.execute(
            "select request from raw.ckw_api_health_log where endpoint like '%trasignale%' "
            "group by run_id, call_seq, request having not bool_or(success)").fetchall()]
    for i in range(30):
        day = first + timedelta(days=i)
        served = len(httpx.get(f"{standin}/api/v1/netzinformationen/trasignale/{day}").json())
        if any(str(day) in r for r in exhausted):
            assert day not in stored
        else:
            assert stored.get(day) == served, day
    assert tra.success == (not exhausted)
    if exhausted:
        message = tra.get_step_failure_events()[0].step_failure_data.error.message
        assert "failed after all attempts" in message and "rows of the other calls were loaded" in message
    if prices.success:
        assert count(resources, "select count(*) from raw.ckw_prices") == \
            sum(expected_slots(first + timedelta(days=i), TZ) for i in range(30)) * 8
    assert plant.success == (count(resources, "select count(*) from raw.ckw_plant_status") == 1)

    # The checks say what went wrong.
    checks = run_checks(resources)
    assert not checks["ckw_api_health_score"].passed
    assert checks["ckw_api_health_score"].metadata["health_score_pct"].value < 90
    assert not checks["ckw_no_recent_rejects"].passed
    assert checks["ckw_tra_signals_valid"].passed


def test_checks_pass_on_clean_data(resources):
    today = date.today()
    assert materialize([ckw_price_assets], resources,
                       tags=day_range(today - timedelta(days=1), today + timedelta(days=1))).success
    assert materialize([ckw_ingest_log_assets], resources).success
    checks = run_checks(resources)
    for name in ("ckw_prices_unique_key", "ckw_prices_invariants", "ckw_prices_complete_days",
                 "ckw_api_health_score", "ckw_no_recent_rejects"):
        assert checks[name].passed, (name, checks[name].metadata)
