"""CKW schedules in Europe/Zurich (ckw.md §8): plant and connectivity every 5 minutes,
TRA signals every 15 minutes, prices hourly (and tomorrow's once published)."""


from datetime import timedelta

import dagster as dg

from grid_platform.assets.ckw import TZ, price_days, tra_days

RUNNING = dg.DefaultScheduleStatus.RUNNING
# Tomorrow's prices appear at ~11:20 local; asking earlier returns nothing for that day.
TOMORROW_PUBLISHED_AT = (11, 30)

ckw_prices_job = dg.define_asset_job(
    "ckw_prices_job", selection=dg.AssetSelection.assets("ckw_prices"), partitions_def=price_days,
    description="Dynamic prices for one local day (or a range, in one run).",
)
ckw_tra_signals_job = dg.define_asset_job(
    "ckw_tra_signals_job", selection=dg.AssetSelection.assets("ckw_tra_signals"), partitions_def=tra_days,
    description="TRA signals for one local day (served from the day after).",
)
ckw_plant_job = dg.define_asset_job(
    "ckw_plant_job", selection=dg.AssetSelection.assets("ckw_plant_status"),
    description="Latest reading of the Lutersarni plant.",
)
ckw_connectivity_job = dg.define_asset_job(
    "ckw_connectivity_job", selection=dg.AssetSelection.assets("ckw_api_health_log", "ckw_rejects"),
    description="Connectivity probe: loads every spooled CKW attempt and reject and evaluates the "
                "API health score, latency and rejects.",
)


@dg.schedule(job=ckw_prices_job, cron_schedule="5 * * * *", execution_timezone=TZ, default_status=RUNNING)
def ckw_prices_hourly(context: dg.ScheduleEvaluationContext):
    """Today's prices every hour; tomorrow's too once CKW has published them."""
    now = context.scheduled_execution_time  # already in execution_timezone
    days = [now.date()]
    if (now.hour, now.minute) >= TOMORROW_PUBLISHED_AT:
        days.append(now.date() + timedelta(days=1))
    for day in days:
        yield dg.RunRequest(run_key=f"{day.isoformat()}@{now:%Y-%m-%dT%H}", partition_key=day.isoformat())


@dg.schedule(job=ckw_tra_signals_job, cron_schedule="*/15 * * * *", execution_timezone=TZ, default_status=RUNNING)
def ckw_tra_signals_quarter_hourly(context: dg.ScheduleEvaluationContext):
    """Yesterday's TRA signals (the newest date the API serves), re-read so corrections land."""
    now = context.scheduled_execution_time
    yesterday = (now - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"{yesterday}@{now:%Y-%m-%dT%H:%M}", partition_key=yesterday)


ckw_plant_every_5_min = dg.ScheduleDefinition(
    name="ckw_plant_every_5_min", job=ckw_plant_job, cron_schedule="*/5 * * * *", execution_timezone=TZ,
    default_status=RUNNING, description="Poll the plant live feed every 5 minutes.",
)
ckw_connectivity_probe = dg.ScheduleDefinition(
    name="ckw_connectivity_probe", job=ckw_connectivity_job, cron_schedule="*/5 * * * *", execution_timezone=TZ,
    default_status=RUNNING, description="Every 5 minutes: load the CKW call log and evaluate API health.",
)

ckw_jobs = [ckw_prices_job, ckw_tra_signals_job, ckw_plant_job, ckw_connectivity_job]
ckw_schedules = [ckw_prices_hourly, ckw_tra_signals_quarter_hourly, ckw_plant_every_5_min, ckw_connectivity_probe]
