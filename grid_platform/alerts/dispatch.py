"""Alert dispatch (alerts-and-access.md §4): risk_km rows + active rules -> one report per group.

Entry points (no Dagster; the sensors/schedules/jobs wrap them):

* ``dispatch_for_event(event, sessions=..., channels=..., config=..., published_root=...)``:
  filters, horizon, networks, then ``dispatch_network`` for each network. Raises
  ``DispatchFailed`` (after doing every other network) when some network's risk data could
  not be read or a delivery hit an unexpected error, so the run fails visibly and can be
  retried; the ledger makes the retry send only what is missing.
* ``dispatch_network(network_id, dates, period=..., ...)``: one network.
* ``process_recorded_events(...)``: dispatch every recorded, not yet handled run event
  (the job started by the MQTT sensor) and mark it handled.
* ``load_risk_km(published_root, network_id, dates)``: tratta rows of the published ``risk``
  dataset (raises ``RiskDataError``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy.orm import sessionmaker

from grid_platform.alerts import report
from grid_platform.alerts.config import AlertConfig
from grid_platform.alerts.delivery import (
    FAILED,
    INGEST,
    WEBHOOK,
    Channels,
    DeliveryCounts,
    Outgoing,
    deliver_once,
)
from grid_platform.alerts.events import PipelineRunEvent, horizon_dates, skip_reason, target_networks
from grid_platform.publish import current
from grid_platform.store import dispatch as ledger
from grid_platform.store.rules import active_rules, get_settings

log = logging.getLogger(__name__)

RISK_DATASET = "risk"
RISK_KM_FILE = "risk_km.parquet"
ROW_LIMIT = 20000
EVENT_TYPE = report.SCENARIO


class RiskDataError(RuntimeError):
    """The risk data of a network could not be read: not a calm day, the dispatch must fail."""


class DispatchFailed(RuntimeError):
    def __init__(self, message: str, summary: DispatchSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True)
class RuleView:
    """A detached copy of an active rule (safe to use after the session closed)."""

    id: str
    user_id: str
    network_id: str
    risk_types: list[str]
    threshold: str
    recipients: str | None


@dataclass
class NetworkDispatch:
    network_id: str
    rules: int = 0
    groups: int = 0
    reports: DeliveryCounts = field(default_factory=DeliveryCounts)
    webhooks: DeliveryCounts = field(default_factory=DeliveryCounts)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"network_id": self.network_id, "rules": self.rules, "groups": self.groups,
                "reports": self.reports.as_dict(), "webhooks": self.webhooks.as_dict(), "error": self.error}


@dataclass
class DispatchSummary:
    event_key: str | None
    dispatched: bool
    reason: str | None = None
    period: str | None = None
    dates: list[str] = field(default_factory=list)
    networks: list[NetworkDispatch] = field(default_factory=list)

    @property
    def reports(self) -> DeliveryCounts:
        total = DeliveryCounts()
        for network in self.networks:
            total.merge(network.reports)
        return total

    @property
    def webhooks(self) -> DeliveryCounts:
        total = DeliveryCounts()
        for network in self.networks:
            total.merge(network.webhooks)
        return total

    def as_dict(self) -> dict[str, Any]:
        return {"event_key": self.event_key, "dispatched": self.dispatched, "reason": self.reason,
                "period": self.period, "dates": self.dates, "reports": self.reports.as_dict(),
                "webhooks": self.webhooks.as_dict(), "networks": [n.as_dict() for n in self.networks]}


def load_risk_km(published_root: Path, network_id: str, dates: Sequence[str], *, limit: int = ROW_LIMIT
                 ) -> list[dict[str, Any]]:
    """Tratta ``risk_km`` rows of ``dates`` from the current ``risk`` publication (at most ``limit``)."""
    publication = current(Path(published_root), RISK_DATASET, network_id)
    if publication is None:
        raise RiskDataError(f"no published {RISK_DATASET!r} dataset for network {network_id!r}")
    path = publication.file(RISK_KM_FILE)
    query = (f"SELECT CAST(date AS DATE) AS date, risk_vector, level, operational_unit, line_name, km_total, "
             f"km_alert, km_warning, worst_level FROM read_parquet(?) "
             f"WHERE level = 'tratta' AND CAST(date AS DATE) IN ({', '.join('?' for _ in dates)}) LIMIT {int(limit)}")
    try:
        with duckdb.connect(":memory:") as connection:
            cursor = connection.execute(query, [str(path), *[date.fromisoformat(d) for d in dates]])
            names = [c[0] for c in cursor.description]
            rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    except (duckdb.Error, OSError, ValueError) as exc:
        raise RiskDataError(f"cannot read {path}: {exc}") from exc
    if len(rows) >= limit:
        log.warning("risk_km of %s reached the %d-row limit; the report may be incomplete", network_id, limit)
    return rows


def _load_rules(sessions: sessionmaker, network_id: str) -> tuple[list[RuleView], dict[str, tuple[str | None, str | None]]]:
    """Active rules of the network and, per owner, (email_recipients, webhook_url)."""
    with sessions.begin() as session:
        rules = [RuleView(id=str(r.id), user_id=r.user_id, network_id=r.network_id, risk_types=list(r.risk_types),
                          threshold=r.threshold, recipients=r.recipients) for r in active_rules(session, network_id)]
        owners = {}
        for user_id in dict.fromkeys(r.user_id for r in rules):
            settings = get_settings(session, user_id)
            owners[user_id] = (settings.email_recipients, settings.webhook_url)
    return rules, owners


def rule_networks(sessions: sessionmaker) -> list[str]:
    """Every distinct non-empty network with an active rule, sorted."""
    with sessions.begin() as session:
        return sorted({r.network_id for r in active_rules(session) if r.network_id})


def dispatch_network(network_id: str, dates: Sequence[date | str], *, period: date | str, sessions: sessionmaker,
                     channels: Channels, config: AlertConfig, published_root: Path | None = None,
                     rows: Iterable[Mapping[str, Any]] | None = None, generated_at: datetime | None = None
                     ) -> NetworkDispatch:
    """Send one ``grid_risk_report`` per recipient group of ``network_id`` (and signed webhooks).

    ``rows``: risk_km rows to use instead of reading the publication under ``published_root``.
    Raises ``RiskDataError`` when the risk data cannot be read.
    """
    day_list = [report.iso_date(d) for d in dates]
    period_text = report.iso_date(period)
    result = NetworkDispatch(network_id)
    rules, owners = _load_rules(sessions, network_id)
    result.rules = len(rules)
    if not rules:
        return result
    if rows is None:
        if published_root is None:
            raise ValueError("dispatch_network needs published_root or rows")
        rows = load_risk_km(published_root, network_id, day_list)
    km_rows = report.km_rows(rows, day_list)
    generated = generated_at or datetime.now(UTC)
    errors: list[str] = []

    def facts(group: report.Group) -> dict[str, Any]:
        return report.report_facts(group, km_rows, network_id=network_id, dates=day_list, period=period_text,
                                   generated_at=generated, app_url=config.app_url)

    def send(counts: DeliveryCounts, outgoing: Outgoing) -> None:
        try:
            counts.add(deliver_once(sessions, channels, outgoing, max_attempts=config.max_attempts,
                                    lease_s=config.lease_s))
        except Exception as exc:  # one group's trouble never stops the others; the run still fails
            log.exception("delivery %s raised", outgoing.key)
            counts.add(FAILED)
            errors.append(f"{outgoing.key}: {type(exc).__name__}: {exc}")

    groups = report.recipient_groups(rules, km_rows, {user: emails for user, (emails, _) in owners.items()})
    result.groups = len(groups)
    for group in groups:
        body = {"event_type": EVENT_TYPE, "user_id": group.key, "community_id": network_id,
                "timestamp": report.utc_iso(generated), "payload": {"rule_ids": group.rule_ids},
                "facts": facts(group)}
        send(result.reports, Outgoing(key=ledger.delivery_key(EVENT_TYPE, network_id, group.key, period_text),
                                      event_type=EVENT_TYPE, channel=INGEST, recipient_key=group.key,
                                      period=period_text, payload=body, network_id=network_id))

    webhooks = {user: url for user, (_, url) in owners.items() if url}
    if webhooks and channels.webhook is None:
        log.warning("%d webhook URL(s) on network %s not served: GRID_WEBHOOK_SECRET is unset", len(webhooks),
                    network_id)
    elif webhooks:
        for group in report.owner_groups(rules, km_rows, webhooks):
            recipient = f"webhook:{group.key}"
            body = {"event_type": EVENT_TYPE, "user_id": group.key, "network_id": network_id,
                    "timestamp": report.utc_iso(generated), "facts": facts(group)}
            send(result.webhooks, Outgoing(key=ledger.delivery_key(EVENT_TYPE, network_id, recipient, period_text),
                                           event_type=EVENT_TYPE, channel=WEBHOOK, recipient_key=recipient,
                                           period=period_text, payload=body, network_id=network_id,
                                           target=webhooks[group.key]))
    if errors:
        result.error = "; ".join(errors)
    log.info("grid alerts %s %s: %d rules, %d groups, reports %s, webhooks %s", network_id, period_text,
             result.rules, result.groups, result.reports.as_dict(), result.webhooks.as_dict())
    return result


def dispatch_for_event(event: PipelineRunEvent, *, sessions: sessionmaker, channels: Channels, config: AlertConfig,
                       published_root: Path, today: date | None = None, generated_at: datetime | None = None
                       ) -> DispatchSummary:
    reason = skip_reason(event, config)
    if reason is not None:
        return DispatchSummary(event_key=event.key, dispatched=False, reason=reason)
    run_date = event.run_date(today)
    dates = [d.isoformat() for d in horizon_dates(run_date, config.horizon_days)]
    summary = DispatchSummary(event_key=event.key, dispatched=True, period=run_date.isoformat(), dates=dates)
    if not dates:
        summary.reason = "empty horizon (GRID_ALERT_HORIZON_DAYS=0)"
        return summary
    failures = []
    for network_id in target_networks(event.namespace, config, lambda: rule_networks(sessions)):
        try:
            outcome = dispatch_network(network_id, dates, period=run_date, sessions=sessions, channels=channels,
                                       config=config, published_root=published_root, generated_at=generated_at)
        except RiskDataError as exc:
            log.error("grid alerts %s: risk data unreadable, nothing sent: %s", network_id, exc)
            outcome = NetworkDispatch(network_id, error=str(exc))
        summary.networks.append(outcome)
        if outcome.error:
            failures.append(f"{network_id}: {outcome.error}")
    if failures:
        raise DispatchFailed("grid alert dispatch incomplete: " + " | ".join(failures), summary)
    return summary


def process_recorded_events(*, sessions: sessionmaker, channels: Channels, config: AlertConfig,
                            published_root: Path, limit: int = 100) -> list[DispatchSummary]:
    """Dispatch each recorded run event not yet handled, then mark it handled.

    An event whose dispatch fails stays unhandled (retried by the next call) and the
    failure is raised after the other events were processed.
    """
    with sessions.begin() as session:
        pending = [(e.event_key, PipelineRunEvent(**{k: e.payload.get(k) for k in (
            "flow", "namespace", "status", "run_id", "timestamp", "duration_ms", "error")}))
            for e in ledger.unhandled_events(session, limit=limit)]
    summaries, failures = [], []
    for key, event in pending:
        try:
            summary = dispatch_for_event(event, sessions=sessions, channels=channels, config=config,
                                         published_root=published_root)
        except DispatchFailed as exc:
            summaries.append(exc.summary)
            failures.append(str(exc))
            continue
        with sessions.begin() as session:
            ledger.mark_event_handled(session, key, summary.as_dict())
        summaries.append(summary)
    if failures:
        raise DispatchFailed(" || ".join(failures))
    return summaries
