from datetime import date, datetime

from grid_platform.cli import bootstrap_phases, main, reference_year_partitions


def test_bootstrap_loads_a_week_then_the_call_log_then_the_marts():
    morning = bootstrap_phases(date(2026, 3, 29), datetime(2026, 3, 29, 9, 0))
    jobs = [[job for job, _ in phase] for phase in morning]
    assert jobs == [["ckw_prices_job", "ckw_tra_signals_job", "ckw_plant_job"], ["ckw_connectivity_job"],
                    ["ckw_marts_job"]]
    prices = dict(morning[0])["ckw_prices_job"]
    assert prices == {"dagster/asset_partition_range_start": "2026-03-22",
                      "dagster/asset_partition_range_end": "2026-03-29"}
    assert dict(morning[0])["ckw_tra_signals_job"]["dagster/asset_partition_range_end"] == "2026-03-28"
    noon = bootstrap_phases(date(2026, 3, 29), datetime(2026, 3, 29, 12, 0))
    assert dict(noon[0])["ckw_prices_job"]["dagster/asset_partition_range_end"] == "2026-03-30"


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
