"""Alert dispatch in Dagster (alerts-and-access.md §4): what starts it and the jobs that do it.

Triggers, each turned into one pipeline-run event and a run of ``alert_dispatch_job``:

* ``grid_alerts_on_risk``: run-status sensor; a successful run that materialised the risk
  publication of a network and date (the hourly forecast's automation run, a risk-tables job,
  a backfill) dispatches that network for that date. Past dates are history, not news: skipped.
* ``grid_alerts_mqtt``: consumes pipeline-run events of external pipelines from the broker
  (persistent session, QoS 1, ``alerts.mqtt.drain``); each is recorded in the processed-events
  table before it is acked, and the sensor cursor (received time and key of the last event
  turned into a run) makes each event count once, even across redeliveries and restarts.
  With no ``MQTT_URL`` it skips, saying MQTT is off.
* ``grid_alerts_daily_digest``: every day at 08:00 Europe/Zurich, two hours after the run the
  operators' day starts with (upstream ran at 08:00 UTC; the platform keeps every schedule in
  local time), the grid event: every network with an active rule, today's horizon.

All paths share the delivery ledger, so a recipient group gets one report per network and
period whichever fires first. ``alert_dead_letter_retry_job`` (launched from the UI) requeues
parked deliveries and resends them with their stored body and idempotency key.
"""


import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import sessionmaker

from grid_platform.alerts import mqtt
from grid_platform.alerts.config import AlertConfig
from grid_platform.alerts.delivery import retry_due
from grid_platform.alerts.dispatch import DispatchFailed, DispatchSummary, dispatch_for_event
from grid_platform.alerts.events import COMPLETED, PipelineRunEvent, record_run_events, skip_reason
from grid_platform.assets.alerts import AlertsResource, dead_letter_check_event
from grid_platform.assets.risk import PUBLICATION, TZ, risk_partitions
from grid_platform.store import dispatch as ledger

RUNNING = dg.DefaultSensorStatus.RUNNING
MQTT_SOURCE = "mqtt"
DIGEST_CRON = "0 8 * * *"  # Europe/Zurich
EVENT_BATCH = 200


class AlertEventConfig(dg.Config):
    """A pipeline-run event (the MQTT payload of §4) and where it came from."""

    flow: str
    namespace: str
    status: str = COMPLETED
    run_id: str
    timestamp: str | None = None
    duration_ms: int | None = None
    error: str | None = None
    source: str = "dagster"

    def event(self) -> PipelineRunEvent:
        return PipelineRunEvent(flow=self.flow, namespace=self.namespace, status=self.status, run_id=self.run_id,
                                timestamp=self.timestamp, duration_ms=self.duration_ms, error=self.error)


def _run_config(event: PipelineRunEvent, source: str) -> dict:
    return {"ops": {"dispatch_alert_event": {"config": {**event.as_dict(), "source": source}}}}


def _summary_metadata(summary: DispatchSummary | None) -> dict:
    if summary is None:
        return {}
    rows = [f"| {n.network_id} | {n.rules} | {n.groups} | {n.reports.sent} | {n.reports.skipped} | "
            f"{n.reports.failed} | {n.reports.dead_lettered} | {n.error or ''} |" for n in summary.networks]
    table = "\n".join(["| network | rules | groups | sent | skipped | failed | dead letters | error |",
                       "|---|---|---|---|---|---|---|---|", *rows]) if rows else "no network"
    return {"dispatched": summary.dispatched, "reason": summary.reason or "", "period": summary.period or "",
            "dates": ", ".join(summary.dates), **{f"reports_{k}": v for k, v in summary.reports.as_dict().items()},
            **{f"webhooks_{k}": v for k, v in summary.webhooks.as_dict().items()},
            "networks": dg.MetadataValue.md(table)}


@dg.op(tags={"domain": "alerts"}, out=dg.Out(dg.Nothing))
def dispatch_alert_event(context: dg.OpExecutionContext, config: AlertEventConfig, alerts: AlertsResource):
    """Record the event, send one grid risk report per recipient group of its networks through the
    delivery ledger, mark the event handled. Unreadable risk data or an unexpected delivery error
    fails the run (retry it: the ledger sends only what is missing)."""
    event = config.event()
    alert_config = alerts.alert_config()
    with alerts.sessions() as sessions:
        with sessions.begin() as session:
            ledger.record_event(session, event.key, source=config.source, run_id=event.run_id, flow=event.flow,
                                namespace=event.namespace, status=event.status, payload=event.as_dict())
        try:
            with alerts.channels(alert_config) as channels:
                summary = dispatch_for_event(event, sessions=sessions, channels=channels, config=alert_config,
                                             published_root=alerts.published_dir)
        except DispatchFailed as exc:
            context.log_event(dead_letter_check_event(sessions))
            raise dg.Failure(description=str(exc), metadata=_summary_metadata(exc.summary)) from exc
        with sessions.begin() as session:
            ledger.mark_event_handled(session, event.key, summary.as_dict())
        context.log_event(dead_letter_check_event(sessions))
    context.log.info("alert event %s: %s", event.key, json.dumps(summary.as_dict(), default=str))
    return dg.Output(None, metadata=_summary_metadata(summary))


class DeadLetterRetryConfig(dg.Config):
    """Which parked deliveries to re-attempt: all of them, or only these ledger keys."""

    keys: list[str] = Field(default_factory=list)
    event_type: str | None = None


@dg.op(tags={"domain": "alerts"}, out=dg.Out(dg.Nothing))
def retry_dead_letters(context: dg.OpExecutionContext, config: DeadLetterRetryConfig, alerts: AlertsResource):
    """Put parked deliveries back as pending with a fresh attempt budget and resend them (stored
    body, same idempotency key, so a receiver that already had one keeps one), together with
    every failed delivery and every one whose sender died."""
    alert_config = alerts.alert_config()
    with alerts.sessions() as sessions:
        with sessions.begin() as session:
            parked = [d.key for d in ledger.dead_letters(session, event_type=config.event_type)
                      if not config.keys or d.key in config.keys]
            requeued = [key for key in parked if ledger.requeue(session, key)]
        unknown = sorted(set(config.keys) - set(parked))
        if unknown:
            context.log.warning("not parked (already retried or unknown), left alone: %s", ", ".join(unknown))
        with alerts.channels(alert_config) as channels:
            counts = retry_due(sessions, channels, event_type=config.event_type,
                               max_attempts=alert_config.max_attempts, lease_s=alert_config.lease_s)
        context.log_event(dead_letter_check_event(sessions))
    context.log.info("requeued %d dead letter(s); retry outcome %s", len(requeued), counts.as_dict())
    return dg.Output(None, metadata={"requeued": len(requeued), "requeued_keys": ", ".join(requeued) or "none",
                                     **{f"retry_{k}": v for k, v in counts.as_dict().items()}})


@dg.job(tags={"domain": "alerts"},
        description="Grid risk reports of one pipeline-run event (risk publication, MQTT, daily digest): one per "
                    "recipient group and network, exactly once through the delivery ledger.")
def alert_dispatch_job():
    dispatch_alert_event()


@dg.job(tags={"domain": "alerts"},
        description="Retry from the UI: requeue the parked (dead-letter) deliveries, optionally only some keys, and "
                    "resend them through the exactly-once path; the dead-letter check is re-evaluated after.")
def alert_dead_letter_retry_job():
    retry_dead_letters()


# Risk publication -> dispatch ---------------------------------------------------------------

def published_partitions(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, date]]:
    """(network, date) of every risk publication the run materialised, sorted, without repeats."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    found = set()
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.asset_key != PUBLICATION or event.partition is None:
            continue
        keys = risk_partitions.get_partition_key_from_str(event.partition).keys_by_dimension
        found.add((keys["network"], date.fromisoformat(keys["date"])))
    return sorted(found)


def risk_publication_event(dagster_run_id: str, network_id: str, day: date, config: AlertConfig
                           ) -> PipelineRunEvent:
    """The event a risk publication stands for: the network is the namespace, the date the run date."""
    return PipelineRunEvent(flow=config.pipeline_flow, namespace=network_id, status=COMPLETED,
                            run_id=f"dagster:{dagster_run_id}:{network_id}:{day.isoformat()}",
                            timestamp=day.isoformat())


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, name="grid_alerts_on_risk",
                      request_job=alert_dispatch_job, default_status=RUNNING, minimum_interval_seconds=30,
                      description="After a successful run that published risk data of a network for today or later, "
                                  "dispatches that network's alerts for that date.")
def grid_alerts_on_risk(context: dg.RunStatusSensorContext, alerts: AlertsResource):
    published = published_partitions(context.instance, context.dagster_run.run_id)
    if not published:
        return dg.SkipReason(f"run {context.dagster_run.run_id} published no risk data")
    config = alerts.alert_config()
    today = datetime.now(ZoneInfo(TZ)).date()
    events = [risk_publication_event(context.dagster_run.run_id, n, d, config) for n, d in published if d >= today]
    if not events:
        return dg.SkipReason(f"run {context.dagster_run.run_id} published only past dates (a backfill): no alerts")
    if not config.enabled:
        skip_reason(events[0], config)  # logs the kill switch with flow and namespace
        return dg.SkipReason("alerts disabled (GRID_ALERTS_ENABLED=false)")
    return [dg.RunRequest(run_key=e.key, run_config=_run_config(e, "dagster"),
                          tags={"alerts/network": e.namespace, "alerts/period": e.timestamp or ""})
            for e in events]


# MQTT pipeline-run events -> dispatch --------------------------------------------------------

def _cursor(text: str | None) -> tuple[datetime, str] | None:
    if not text:
        return None
    data = json.loads(text)
    return datetime.fromisoformat(data["received_at"]), data["event_key"]


def events_after(sessions: sessionmaker, cursor: tuple[datetime, str] | None, *, limit: int = EVENT_BATCH
                 ) -> list[ledger.ProcessedEvent]:
    """Recorded MQTT events after the cursor, in (received_at, event_key) order."""
    table = ledger.ProcessedEvent
    query = select(table).where(table.source == MQTT_SOURCE)
    if cursor is not None:
        received_at, key = cursor
        query = query.where(or_(table.received_at > received_at,
                                and_(table.received_at == received_at, table.event_key > key)))
    with sessions.begin() as session:
        return list(session.scalars(query.order_by(table.received_at, table.event_key).limit(limit)))


@dg.sensor(name="grid_alerts_mqtt", job=alert_dispatch_job, default_status=RUNNING, minimum_interval_seconds=30,
           description="Pipeline-run events of external pipelines from MQTT (celine/pipelines/runs/+, persistent "
                       "session, QoS 1): each completed run of the grid flow dispatches once.")
def grid_alerts_mqtt(context: dg.SensorEvaluationContext, alerts: AlertsResource):
    if not alerts.mqtt_url:
        return dg.SkipReason(f"{mqtt.MQTT_OFF}: alerts are dispatched from the platform's own risk runs only")
    config = alerts.alert_config()
    with alerts.sessions() as sessions:
        # Recorded (committed) before the batch is acked: a crash in between means a redelivery,
        # which the processed-events table absorbs.
        drained = mqtt.drain(alerts.mqtt_url, lambda batch: record_run_events(
            sessions, [m.payload for m in batch], source=MQTT_SOURCE), client_id=config.mqtt_client_id,
            session_expiry_s=config.mqtt_session_expiry_s, max_wait_s=10.0, idle_s=0.5)
        cursor = _cursor(context.cursor)
        requests, skipped = [], 0
        for row in events_after(sessions, cursor):
            cursor = (row.received_at, row.event_key)
            if row.handled_at is not None:
                continue
            event = PipelineRunEvent(**{k: row.payload.get(k) for k in (
                "flow", "namespace", "status", "run_id", "timestamp", "duration_ms", "error")})
            reason = skip_reason(event, config)
            if reason is not None:  # nothing to send: close it here rather than start a run
                with sessions.begin() as session:
                    ledger.mark_event_handled(session, row.event_key, {"dispatched": False, "reason": reason})
                skipped += 1
                continue
            requests.append(dg.RunRequest(run_key=event.key, run_config=_run_config(event, MQTT_SOURCE),
                                          tags={"alerts/namespace": event.namespace, "alerts/run_id": event.run_id}))
    if cursor is not None:
        context.update_cursor(json.dumps({"received_at": cursor[0].astimezone(UTC).isoformat(),
                                          "event_key": cursor[1]}))
    if not requests:
        return dg.SkipReason(f"MQTT: {drained.detail}; {skipped} event(s) closed without dispatch, none to send")
    return requests


# Daily digest -------------------------------------------------------------------------------

def digest_event(day: date, scheduled_at: datetime, config: AlertConfig) -> PipelineRunEvent:
    """The grid event of the day: every network with an active rule, horizon from ``day``."""
    return PipelineRunEvent(flow=config.pipeline_flow, namespace=config.pipeline_namespace, status=COMPLETED,
                            run_id=f"digest:{day.isoformat()}", timestamp=scheduled_at.isoformat())


@dg.schedule(name="grid_alerts_daily_digest", job=alert_dispatch_job, cron_schedule=DIGEST_CRON,
             execution_timezone=TZ, default_status=dg.DefaultScheduleStatus.RUNNING,
             description="08:00 Europe/Zurich: today's grid risk reports for every network with an active rule (groups already "
                         "notified today by a risk run are skipped by the ledger).")
def grid_alerts_daily_digest(context: dg.ScheduleEvaluationContext, alerts: AlertsResource):
    config = alerts.alert_config()
    scheduled_at = context.scheduled_execution_time or datetime.now(UTC)
    event = digest_event(scheduled_at.astimezone(ZoneInfo(TZ)).date(), scheduled_at, config)
    reason = skip_reason(event, config)
    if reason is not None:
        return dg.SkipReason(reason)
    return dg.RunRequest(run_key=event.key, run_config=_run_config(event, "schedule"))


alert_jobs = [alert_dispatch_job, alert_dead_letter_retry_job]
alert_sensors = [grid_alerts_on_risk, grid_alerts_mqtt]
alert_schedules = [grid_alerts_daily_digest]
