"""Flexibility jobs, schedules and sensors (flexibility.md §4.1, §5), Europe/Zurich.

* Schedules: windows of today and tomorrow twice a day (tomorrow's CKW prices appear at ~11:20),
  the forecast hourly, the settlement data of the two previous UTC days daily at 03:30 (late
  meter data lands on the second read), the scores of yesterday daily.
* ``flex_settlement_sensor``: each materialisation of ``device_consumption_hourly`` requests
  the settlement of its UTC day; the ledger makes repeated and overlapping runs harmless.
* ``flex_reminders_sensor``: every 5 minutes the in-window sweep (§5.2), in the sensor itself:
  stamps ``reminded_at`` and commits before sending, so a reminder goes at most once.
* ``flex_opportunity_sensor``: each ``community_forecast`` materialisation runs the
  opportunity nudges for every community (§5.3).
"""


from datetime import UTC, date, datetime, timedelta

import dagster as dg

from grid_platform.assets.flexibility import (
    COMMUNITY_FORECAST,
    DAILY_POINTS_EXPORT,
    DEVICE_CONSUMPTION_HOURLY,
    FLEX_SCORING,
    FLEX_SETTLEMENT,
    FLEX_SUGGESTIONS,
    FLEX_WINDOWS,
    LEADERBOARD_EXPORT,
    LEDGER_EXPORT,
    TZ,
    communities,
    community_days,
    utc_days,
)
from grid_platform.flexibility import pipeline, publications
from grid_platform.flexibility.notify import sweep_reminders
from grid_platform.flexibility.settlement import settlement_date
from grid_platform.resources.flexibility import FlexibilityResource

RUNNING = dg.DefaultScheduleStatus.RUNNING
SENSOR_RUNNING = dg.DefaultSensorStatus.RUNNING
LATE_DATA_DAYS = 2  # UTC days the settlement data is re-read for late meter readings
MATERIALISATIONS_PER_TICK = 100

flex_windows_job = dg.define_asset_job(
    "flex_windows_job", selection=dg.AssetSelection.assets(FLEX_WINDOWS), partitions_def=community_days,
    description="Flexibility windows of one community and local date (partition `community|date`).",
)
flex_forecast_job = dg.define_asset_job(
    "flex_forecast_job", selection=dg.AssetSelection.assets(COMMUNITY_FORECAST),
    description="Next-24-h net-exchange forecast of every community; triggers the opportunity nudges.",
)
flex_meter_job = dg.define_asset_job(
    "flex_meter_job", selection=dg.AssetSelection.assets(DEVICE_CONSUMPTION_HOURLY), partitions_def=utc_days,
    description="Hourly device consumption of one UTC day (the settlement data).",
)
flex_settlement_job = dg.define_asset_job(
    "flex_settlement_job", selection=dg.AssetSelection.assets(FLEX_SETTLEMENT), partitions_def=utc_days,
    description="Exactly-once settlement of the commitments inside one UTC day.",
)
flex_scoring_job = dg.define_asset_job(
    "flex_scoring_job", selection=dg.AssetSelection.assets(FLEX_SCORING), partitions_def=community_days,
    description="Daily points and season leaderboard of one community and local date.",
)
flex_suggestions_job = dg.define_asset_job(
    "flex_suggestions_job", selection=dg.AssetSelection.assets(FLEX_SUGGESTIONS),
    description="Suggestions of every demo-community participant for today and tomorrow (from the published windows).",
)
flex_marts_job = dg.define_asset_job(
    "flex_marts_job",
    selection=dg.AssetSelection.assets(LEDGER_EXPORT, DAILY_POINTS_EXPORT, LEADERBOARD_EXPORT)
    | dg.AssetSelection.groups("flexibility_bi"),
    description="Settlement ledger and scores into the warehouse, then the flexibility BI marts (dbt build).",
)


@dg.op(description="§5.3: the earliest forecast window of every community, to each member (daily de-duplicated).")
def send_flex_opportunities(context: dg.OpExecutionContext, flexibility: FlexibilityResource) -> dict[str, int]:
    forecasts, made = {}, []
    for community in flexibility.registry.communities(0, 1000):
        published = publications.read_forecast(flexibility.root, community)
        if published is not None:
            forecasts[community], made_at = published
            made.append(made_at)
    if not made:
        context.log.info("no forecast published yet")
        return {}
    with flexibility.notifier() as notifier:
        counts = pipeline.send_opportunities(flexibility.registry, forecasts, max(made), notifier, flexibility.config)
    context.add_output_metadata({"nudges": dg.MetadataValue.json(counts), "communities": len(forecasts)})
    return counts


@dg.job(description="Opportunity nudges from the latest published forecasts (§5.3).")
def flex_opportunity_job():
    send_flex_opportunities()


def _community_day_requests(days: list[date], stamp: str) -> list[dg.RunRequest]:
    return [dg.RunRequest(run_key=f"{community}|{day.isoformat()}@{stamp}",
                          partition_key=dg.MultiPartitionKey({"community": community, "date": day.isoformat()}))
            for day in days for community in communities.get_partition_keys()]


@dg.schedule(job=flex_windows_job, cron_schedule="40 0,12 * * *", execution_timezone=TZ, default_status=RUNNING)
def flex_windows_twice_daily(context: dg.ScheduleEvaluationContext):
    """Today's and tomorrow's windows of every community, after midnight and once tomorrow's prices are out."""
    now = context.scheduled_execution_time
    return _community_day_requests([now.date(), now.date() + timedelta(days=1)], f"{now:%Y-%m-%dT%H}")


@dg.schedule(job=flex_scoring_job, cron_schedule="0 3 * * *", execution_timezone=TZ, default_status=RUNNING)
def flex_scoring_daily(context: dg.ScheduleEvaluationContext):
    """Yesterday's points of every community, once its meter data and settlements are in."""
    now = context.scheduled_execution_time
    return _community_day_requests([now.date() - timedelta(days=1)], f"{now:%Y-%m-%d}")


@dg.schedule(job=flex_meter_job, cron_schedule="30 3 * * *", execution_timezone=TZ, default_status=RUNNING)
def flex_meter_daily(context: dg.ScheduleEvaluationContext):
    """The settlement data of the previous UTC day (ended at 01:00 or 02:00 local), and of the day
    before again for late readings."""
    now = context.scheduled_execution_time
    today_utc = now.astimezone(UTC).date()
    days = [today_utc - timedelta(days=k) for k in range(1, LATE_DATA_DAYS + 1)]
    return [dg.RunRequest(run_key=f"{day.isoformat()}@{now:%Y-%m-%d}", partition_key=day.isoformat()) for day in days]


flex_forecast_hourly = dg.ScheduleDefinition(
    name="flex_forecast_hourly", job=flex_forecast_job, cron_schedule="15 * * * *", execution_timezone=TZ,
    default_status=RUNNING, description="The community forecasts every hour (the opportunity nudges follow).",
)


def settlement_day(partition_key: str | None, materialised_at: float) -> date:
    """The UTC day a materialisation of the settlement data settles: its partition; without a
    readable partition, the day before the materialisation (the seed's rule, §4.1)."""
    try:
        return date.fromisoformat(partition_key or "")
    except ValueError:
        return settlement_date(datetime.fromtimestamp(materialised_at, UTC))


def _new_materialisations(context: dg.SensorEvaluationContext, key: dg.AssetKey) -> tuple[list, int | None]:
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=MATERIALISATIONS_PER_TICK,
        ascending=True).records
    return records, (records[-1].storage_id if records else None)


@dg.sensor(job=flex_settlement_job, minimum_interval_seconds=60, default_status=SENSOR_RUNNING)
def flex_settlement_sensor(context: dg.SensorEvaluationContext):
    """Settles the UTC day of every new ``device_consumption_hourly`` materialisation (late data:
    each re-read settles what became settleable; nothing is settled twice)."""
    records, last = _new_materialisations(context, DEVICE_CONSUMPTION_HOURLY)
    if last is None:
        return dg.SkipReason("no new settlement data")
    requests = {}
    for record in records:
        day = settlement_day(record.partition_key, record.timestamp).isoformat()
        # One run per (day, newest data): a burst of re-reads of one day settles it once.
        requests[day] = dg.RunRequest(run_key=f"settle-{day}-{record.storage_id}", partition_key=day,
                                      tags={"flexibility/settlement_data_run": record.run_id})
    return dg.SensorResult(run_requests=list(requests.values()), cursor=str(last))


@dg.sensor(job=flex_opportunity_job, minimum_interval_seconds=60, default_status=SENSOR_RUNNING)
def flex_opportunity_sensor(context: dg.SensorEvaluationContext):
    """A new ``community_forecast`` materialisation sends the opportunity nudges (§5.3)."""
    _, last = _new_materialisations(context, COMMUNITY_FORECAST)
    if last is None:
        return dg.SkipReason("no new forecast")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"opportunity-{last}")], cursor=str(last))


@dg.sensor(minimum_interval_seconds=300, default_status=SENSOR_RUNNING)
def flex_reminders_sensor(context: dg.SensorEvaluationContext, flexibility: FlexibilityResource):
    """In-window reminders (§5.2): committed rows whose window has started and that were not yet
    reminded are stamped and committed, then one ``flexibility_reminder`` each (at most once)."""
    with flexibility.notifier() as notifier:
        counts = sweep_reminders(flexibility.sessions, notifier, datetime.now(UTC))
    return dg.SkipReason(f"in-window reminders: {counts}")


flexibility_jobs = [flex_windows_job, flex_forecast_job, flex_meter_job, flex_settlement_job, flex_scoring_job,
                    flex_suggestions_job, flex_marts_job, flex_opportunity_job]
flexibility_schedules = [flex_windows_twice_daily, flex_scoring_daily, flex_meter_daily, flex_forecast_hourly]
flexibility_sensors = [flex_settlement_sensor, flex_opportunity_sensor, flex_reminders_sensor]
