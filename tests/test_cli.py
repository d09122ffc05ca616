from datetime import date, datetime
from zoneinfo import ZoneInfo

from grid_platform.cli import bootstrap_phases, main, reference_year_partitions


def test_bootstrap_loads_a_week_then_the_call_log_and_windows_then_the_marts_and_suggestions():
    zurich = ZoneInfo("Europe/Zurich")
    morning = bootstrap_phases(date(2026, 3, 29), datetime(2026, 3, 29, 9, 0, tzinfo=zurich))
    jobs = [[job for job, _ in phase] for phase in morning]
    assert jobs == [["ckw_prices_job", "ckw_tra_signals_job", "ckw_plant_job", "flex_forecast_job", "flex_meter_job"],
                    ["ckw_connectivity_job", "flex_windows_job"], ["ckw_marts_job", "flex_suggestions_job"]]
    prices = dict(morning[0])["ckw_prices_job"]
    assert prices == {"dagster/asset_partition_range_start": "2026-03-22",
                      "dagster/asset_partition_range_end": "2026-03-29"}
    assert dict(morning[0])["ckw_tra_signals_job"]["dagster/asset_partition_range_end"] == "2026-03-28"
    assert dict(morning[0])["flex_meter_job"] == {"dagster/partition": "2026-03-28"}
    assert dict(morning[1])["flex_windows_job"]["dagster/partition"] == "rec-demo|2026-03-29"
    # After 11:30 tomorrow's prices exist: tomorrow's windows too.
    noon = bootstrap_phases(date(2026, 3, 29), datetime(2026, 3, 29, 12, 0, tzinfo=zurich))
    assert dict(noon[0])["ckw_prices_job"]["dagster/asset_partition_range_end"] == "2026-03-30"
    assert [tags["dagster/partition/date"] for job, tags in noon[1] if job == "flex_windows_job"] == [
        "2026-03-29", "2026-03-30"]
    # Just after local midnight the UTC day is still the previous one.
    early = bootstrap_phases(date(2026, 3, 30), datetime(2026, 3, 30, 0, 30, tzinfo=zurich))
    assert dict(early[0])["flex_meter_job"] == {"dagster/partition": "2026-03-28"}


def test_token_command_mints_a_decodable_token(capsys):
    assert main(["token", "alice", "--org", "oberrhein_mv", "--email", "a@example.ch"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2


def test_reference_year_is_the_365_days_before_today_per_network():
    keys = reference_year_partitions(date(2026, 3, 1), ["simbench_1_mv_rural_0_sw", "oberrhein_mv"])
    assert len(keys) == 730
    # 2025-03-01 .. 2026-02-28, network by network: each network's range becomes one run.
    assert keys[0] == "2025-03-01|oberrhein_mv" and keys[364] == "2026-02-28|oberrhein_mv"
    assert keys[365] == "2025-03-01|simbench_1_mv_rural_0_sw"
