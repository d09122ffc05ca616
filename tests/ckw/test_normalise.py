import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from grid_platform.ckw.client import PLANT_LIVE, PRICES, TRA
from grid_platform.ckw.normalise import normalise_plant, normalise_prices, normalise_tra

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def load(path):
    return json.loads(path.read_text())


def test_prices_example_becomes_typed_utc_rows(ckw_examples):
    rows, rejects = normalise_prices(load(ckw_examples / "example_energyprices.json"), endpoint=PRICES,
                                     tariff_name="home_dynamic", ingested_at=NOW)
    assert not rejects
    assert len(rows) == 5 * 4
    first = rows[0]
    assert first["slot_start"] == datetime(2025, 10, 8, 6, 0, tzinfo=UTC)
    assert first["publication_ts"] == datetime(2025, 11, 12, 12, 35, tzinfo=UTC)
    by_type = {r["tariff_type"]: r["value"] for r in rows[:4]}
    assert by_type == {"grid": Decimal("0.163500"), "electricity": Decimal("0.120000"),
                       "integrated": Decimal("0.283500"), "grid_usage": Decimal("0.133200")}
    assert by_type["integrated"] == by_type["grid"] + by_type["electricity"]
    assert {r["tariff_name"] for r in rows} == {"home_dynamic"}


@pytest.mark.parametrize("name", ["dynamische_preise_live_sample_2026-07-21.json",
                                  "dynamische_preise_live_sample_2026-09-28.json"])
def test_observed_live_samples_parse_with_microsecond_publication(shared_dir, name):
    payload = load(shared_dir / "data" / "ckw" / "observed" / name)
    rows, rejects = normalise_prices(payload, endpoint=PRICES, tariff_name="home_dynamic", ingested_at=NOW)
    assert not rejects and len(rows) == 4
    assert rows[0]["publication_ts"].microsecond > 0


def test_bad_slots_are_rejected_and_good_slots_kept(ckw_examples):
    payload = load(ckw_examples / "example_energyprices.json")
    payload["prices"][0]["grid"][0]["value"] = "0.16"          # wrong type
    del payload["prices"][1]["start_timestamp"]                # missing field
    payload["prices"][2]["start_timestamp"] = "2025-10-08T08:30"  # no offset
    payload["prices"].append("garbage")
    rows, rejects = normalise_prices(payload, endpoint=PRICES, tariff_name="home_dynamic", ingested_at=NOW)
    assert len(rows) == 2 * 4
    reasons = [r.reason for r in rejects]
    assert any("grid.value: expected a JSON number, got str" in r for r in reasons)
    assert any("start_timestamp" in r for r in reasons)
    assert any("without offset" in r for r in reasons)
    assert len(rejects) == 4
    row = rejects[0].as_row("run-1", NOW)
    assert set(row) == {"run_id", "endpoint", "record_hash", "rejected_at", "reason", "record"}


def test_schema_drift_rejects_the_body():
    rows, rejects = normalise_prices({"preise": []}, endpoint=PRICES, tariff_name="home_dynamic", ingested_at=NOW)
    assert rows == [] and "no 'prices' array" in rejects[0].reason


def test_tra_example(ckw_examples):
    rows, rejects = normalise_tra(load(ckw_examples / "example_trasignale.json"), endpoint=TRA, ingested_at=NOW)
    assert not rejects and len(rows) == 3
    assert rows[0]["start_ts"].tzinfo == UTC
    assert str(rows[0]["signal_date"]) == "2025-07-08"
    rows, rejects = normalise_tra([{"Name": "000R", "Date": "2025-13-01", "Start": "x"}], endpoint=TRA,
                                  ingested_at=NOW)
    assert rows == [] and "Date" in rejects[0].reason


def test_plant_strings_become_numbers_and_raw_is_kept(ckw_examples):
    payload = load(ckw_examples / "example_lutersarni_live.json")
    rows, rejects = normalise_plant(payload, endpoint=PLANT_LIVE, ingested_at=NOW)
    assert not rejects
    row = rows[0]
    assert row["reading_ts"] == datetime(2025, 12, 3, 13, 40, tzinfo=UTC)
    assert row["voltage_kv"] == pytest.approx(20.697998)
    assert row["reactive_power_mvar"] == pytest.approx(-0.02)
    assert row["operational_status"] == "in Betrieb"
    assert json.loads(row["raw_payload"]) == payload
    payload["wirkleistung"] = "n/a"
    rows, rejects = normalise_plant(payload, endpoint=PLANT_LIVE, ingested_at=NOW)
    assert rows == [] and "wirkleistung" in rejects[0].reason
