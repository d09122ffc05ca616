"""Alert dispatch ledger in Dagster (alerts-and-access.md §4): the resource the alert jobs and
sensors share, the ``alerts/dispatches`` asset exporting the delivery ledger of the state database
into the warehouse (table ``alerts.dispatches``, source of the ``alerts_bi`` dbt models) and the
dead-letter check next to it.

The ledger itself lives in the state database and is written by the dispatch and retry jobs
(grid_platform/sensors/alerts.py); this asset is its read-only BI copy. The dead-letter check
reads the live ledger, so it tells the truth even between two exports; the dispatch and retry
jobs log the same evaluation after each run, so the check turns red when a delivery is parked
and green again after a retry without waiting for the next export.
"""


from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from sqlalchemy.orm import sessionmaker

from grid_platform.alerts.config import AlertConfig, load_alert_config
from grid_platform.alerts.delivery import Channels
from grid_platform.alerts.nudging import NudgingClient, RetryPolicy, WebhookSender, token_provider_from_env
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.store import dispatch as ledger
from grid_platform.store.db import make_engine, session_factory, upgrade

OWNERS = ["team:grid-data"]
GROUP = "alerts"
SCHEMA = "alerts"
TABLE = "dispatches"
ALERT_DISPATCHES = dg.AssetKey([SCHEMA, TABLE])
DEAD_LETTER_CHECK = "no_dead_letters"
MARKDOWN_ROWS = 20
# BI copy of the ledger: the payload (addresses, full facts) and webhook targets stay in the state DB.
EXPORT_COLUMNS = ["key", "event_type", "channel", "network_id", "recipient_key", "period", "status", "attempts",
                  "status_code", "last_error", "threshold", "risk_types", "sent_at", "created_at", "updated_at"]
EXPORT_REFRESH = "*/15 * * * *"

_migrated: set[str] = set()


class AlertsResource(dg.ConfigurableResource):
    """State database (rules, delivery ledger, processed events), nudging tool, MQTT broker and the
    published risk data that alert dispatch reads. Behaviour switches (kill switch, horizon,
    attempts, MQTT client id) come from the ``GRID_*`` variables of ``alerts.config``."""

    state_db_url: str
    nudging_api_url: str
    published_dir: str
    mqtt_url: str | None = None

    def alert_config(self) -> AlertConfig:
        return load_alert_config()

    @contextmanager
    def sessions(self) -> Iterator[sessionmaker]:
        """Sessions on the state database, migrated to head once per process (as the read API does)."""
        if self.state_db_url not in _migrated:
            upgrade(self.state_db_url)
            _migrated.add(self.state_db_url)
        engine = make_engine(self.state_db_url)
        try:
            yield session_factory(engine)
        finally:
            engine.dispose()

    def channels(self, config: AlertConfig) -> Channels:
        """Nudging tool at ``nudging_api_url`` and, with ``GRID_WEBHOOK_SECRET``, signed webhooks."""
        policy = RetryPolicy.from_env()
        return Channels(NudgingClient(self.nudging_api_url, token_provider_from_env(), policy),
                        WebhookSender(config.webhook_secret, policy) if config.webhook_secret else None)


def _markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "none"
    more = f"\n\n… {len(frame) - MARKDOWN_ROWS} more rows" if len(frame) > MARKDOWN_ROWS else ""
    return frame.head(MARKDOWN_ROWS).to_markdown(index=False) + more


def ledger_frame(sessions: sessionmaker, *, status: str | None = None) -> pd.DataFrame:
    """Ledger rows (every event type) in ``EXPORT_COLUMNS``; threshold and hazards from the report facts."""
    with sessions.begin() as session:
        rows = [{
            "key": d.key, "event_type": d.event_type, "channel": d.channel, "network_id": d.network_id,
            "recipient_key": d.recipient_key, "period": d.period, "status": d.status, "attempts": d.attempts,
            "status_code": d.status_code, "last_error": (d.last_error or "")[:500] or None,
            "threshold": (d.payload.get("facts") or {}).get("threshold"),
            "risk_types": ",".join((d.payload.get("facts") or {}).get("risk_types") or []) or None,
            "sent_at": d.sent_at, "created_at": d.created_at, "updated_at": d.updated_at,
        } for d in ledger.deliveries(session, status=status)]
    frame = pd.DataFrame(rows, columns=EXPORT_COLUMNS)
    for column in ("sent_at", "created_at", "updated_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("attempts", "status_code"):
        frame[column] = frame[column].astype("Int64")
    text = [c for c in EXPORT_COLUMNS if c not in ("attempts", "status_code", "sent_at", "created_at", "updated_at")]
    frame[text] = frame[text].astype("string")
    return frame


def dead_letter_evaluation(sessions: sessionmaker) -> tuple[bool, dict]:
    """(passed, metadata) of the dead-letter check over the live ledger."""
    dead = ledger_frame(sessions, status=ledger.DEAD_LETTER)
    listing = dead[["key", "event_type", "network_id", "period", "attempts", "status_code", "last_error"]]
    return dead.empty, {
        "dead_letters": len(dead),
        "networks": ", ".join(sorted(dead["network_id"].dropna().unique())) or "none",
        "parked": dg.MetadataValue.md(_markdown(listing)),
        "how_to_fix": "Fix the cause (see last_error), then launch alert_dead_letter_retry_job from the UI.",
    }


def dead_letter_check_event(sessions: sessionmaker) -> dg.AssetCheckEvaluation:
    """The check's evaluation, for jobs that change the ledger to log right after they did."""
    passed, metadata = dead_letter_evaluation(sessions)
    return dg.AssetCheckEvaluation(asset_key=ALERT_DISPATCHES, check_name=DEAD_LETTER_CHECK, passed=passed,
                                   metadata=metadata, severity=dg.AssetCheckSeverity.ERROR)


@dg.asset(
    key=ALERT_DISPATCHES,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "duckdb", "sqlalchemy"},
    pool="duckdb",
    automation_condition=(dg.AutomationCondition.cron_tick_passed(EXPORT_REFRESH).since_last_handled()
                          & ~dg.AutomationCondition.in_progress()).with_label(f"every 15 minutes ({EXPORT_REFRESH})"),
)
def alert_dispatches(alerts: AlertsResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The delivery ledger of the state database (one row per grid risk report, webhook or reminder
    and its recipient group, network and period, with status, attempts and last error), copied
    whole into the warehouse table alerts.dispatches every 15 minutes for the alerts_bi marts.
    Recipient addresses and report bodies stay in the state database."""
    with alerts.sessions() as sessions:
        frame = ledger_frame(sessions)
    with warehouse.connect() as con:
        con.execute(f"create schema if not exists {SCHEMA}")
        con.register("incoming", frame.assign(exported_at=pd.Timestamp(datetime.now(UTC))))
        con.execute("begin transaction")
        con.execute(f"create or replace table {SCHEMA}.{TABLE} as select * from incoming")
        con.execute("commit")
        con.unregister("incoming")
    by_status = (frame.groupby(["event_type", "status"], as_index=False).size()
                 .rename(columns={"size": "deliveries"}) if len(frame) else frame)
    periods = frame["period"].dropna()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(frame),
        "networks": frame["network_id"].nunique(),
        "periods": f"{periods.min()} .. {periods.max()}" if len(periods) else "none",
        "dead_letters": int((frame["status"] == ledger.DEAD_LETTER).sum()),
        "by_status": dg.MetadataValue.md(_markdown(by_status)),
        "latest": dg.MetadataValue.md(_markdown(frame.sort_values("updated_at", ascending=False)[
            ["key", "status", "attempts", "status_code", "updated_at"]])),
    })


@dg.asset_check(asset=ALERT_DISPATCHES, name=DEAD_LETTER_CHECK, blocking=False,
                description="No delivery is parked as dead letter in the live ledger (each failed its last attempt "
                            "or was rejected). Metadata lists the parked ones; alert_dead_letter_retry_job "
                            "re-attempts them through the exactly-once path.")
def no_dead_letters(alerts: AlertsResource) -> dg.AssetCheckResult:
    with alerts.sessions() as sessions:
        passed, metadata = dead_letter_evaluation(sessions)
    return dg.AssetCheckResult(passed=passed, metadata=metadata, severity=dg.AssetCheckSeverity.ERROR)


alert_assets = [alert_dispatches]
alert_checks = [no_dead_letters]
