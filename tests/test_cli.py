from datetime import date, datetime

from grid_platform.cli import bootstrap_phases, main


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
