"""Risk jobs and schedules in Europe/Zurich: the forecast refreshes every hour for every network
partition; the risk tables follow their weather through their automation condition (evaluated by
the platform's automation sensor), so this module adds no sensor of its own."""

import dagster as dg

from grid_platform.assets.risk import (
    PUBLICATION,
    RISK_TABLES,
    TZ,
    WEATHER_FORECAST,
    WEATHER_REFERENCE,
    risk_partitions,
)
from grid_platform.assets.topology import networks

RUNNING = dg.DefaultScheduleStatus.RUNNING
RISK_TABLE_KEYS = [dg.AssetKey(["risk", t.name]) for t in RISK_TABLES] + [PUBLICATION]

risk_forecast_job = dg.define_asset_job(
    "risk_forecast_job", selection=dg.AssetSelection.assets(WEATHER_FORECAST), partitions_def=risk_partitions,
    description="Hourly forecast weather of one network for the horizon of one date (or a date range, in one run).",
)
risk_reference_job = dg.define_asset_job(
    "risk_reference_job", selection=dg.AssetSelection.assets(WEATHER_REFERENCE, *RISK_TABLE_KEYS),
    partitions_def=risk_partitions,
    description="Reference-year weather and the risk tables it gives, over a date range: backfill e.g. a year for "
                "a network from the UI; each network's range runs as one run, dates in order.",
)
risk_tables_job = dg.define_asset_job(
    "risk_tables_job", selection=dg.AssetSelection.assets(*RISK_TABLE_KEYS), partitions_def=risk_partitions,
    description="Recompute and republish the risk tables over stored weather (e.g. after a threshold change).",
)


@dg.schedule(job=risk_forecast_job, cron_schedule="0 * * * *", execution_timezone=TZ, default_status=RUNNING)
def risk_forecast_hourly(context: dg.ScheduleEvaluationContext):
    """Every hour, 06:00 included (the run the operators' day starts with): today's forecast for every
    network partition that exists; the risk tables of today follow."""
    now = context.scheduled_execution_time  # already in execution_timezone
    known = sorted(context.instance.get_dynamic_partitions(networks.name))
    if not known:
        return dg.SkipReason("no network partition yet (the network registry sensor adds them)")
    today = now.date().isoformat()
    return [dg.RunRequest(run_key=f"{network_id}|{today}@{now:%H}",
                          partition_key=dg.MultiPartitionKey({"date": today, "network": network_id}))
            for network_id in known]


risk_jobs = [risk_forecast_job, risk_reference_job, risk_tables_job]
risk_schedules = [risk_forecast_hourly]
risk_sensors: list[dg.SensorDefinition] = []
