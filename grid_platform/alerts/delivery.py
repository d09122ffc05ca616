"""Exactly-once delivery: the ledger (``store.dispatch``) around the senders (``alerts.nudging``).

Generic over event types; reused by the flexibility domain.

Interface
---------
``Channels(nudging=NudgingClient | None, webhook=WebhookSender | None)`` (or
``channels_from_env(webhook_secret)``) routes a ledger row
by its ``channel``: ``"ingest"`` -> ``POST /admin/ingest-event``, ``"scheduled"`` -> ``POST
/admin/scheduled-events``, ``"webhook"`` -> signed POST to the row's ``target`` URL.

``deliver_once(sessions, channels, Outgoing(...), max_attempts=3, lease_s=120) -> str``

1. claim the ledger key (own transaction, committed before anything is sent);
   already ``sent``/``duplicate`` -> ``"skipped"``; claimed by a live claimer ->
   ``"skipped"``; parked ``dead_letter`` -> ``"dead_lettered"`` (only ``requeue`` revives it);
2. send the *stored* payload under ``Idempotency-Key = sha256(key)`` with in-call retries;
3. record the outcome (own transaction) and return the final state of the delivery:
   ``"sent"``, ``"skipped"`` (the receiver answered 409: it already had it),
   ``"failed"`` (retryable, the next run or ``retry_due`` resends it) or ``"dead_lettered"``
   (rejected by the receiver, or ``max_attempts`` rounds failed).

A crash between 2 and 3 leaves the row ``pending``; once its lease has run out the next
claim (a rerun, or ``retry_due``) resends the same body with the same key, and the receiver's
idempotency de-duplication turns it into one delivery. ``deliver_once`` never raises for a
delivery problem; database errors propagate.

``retry_due(sessions, channels, ...) -> DeliveryCounts`` resends every ``failed`` row and
every ``pending`` row whose claimer vanished (the retry job / "retry from the UI" after
``store.dispatch.requeue``), on the channels above only (rows of other channels, e.g. a
domain's own MQTT ledger rows, are left to their owner).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Self

from sqlalchemy.orm import sessionmaker

from grid_platform.alerts.nudging import NudgingClient, RetryPolicy, SendResult, WebhookSender
from grid_platform.store import dispatch as ledger

log = logging.getLogger(__name__)

INGEST, SCHEDULED, WEBHOOK = "ingest", "scheduled", "webhook"
CHANNELS = (INGEST, SCHEDULED, WEBHOOK)
SENT, SKIPPED, FAILED, DEAD_LETTERED = "sent", "skipped", "failed", "dead_lettered"


@dataclass(frozen=True)
class Outgoing:
    """One delivery to make: its ledger identity and what to send."""

    key: str
    event_type: str
    channel: str
    recipient_key: str
    period: str
    payload: dict[str, Any]
    network_id: str | None = None
    target: str | None = None


@dataclass
class DeliveryCounts:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    dead_lettered: int = 0

    def add(self, state: str) -> None:
        setattr(self, state, getattr(self, state) + 1)

    def merge(self, other: DeliveryCounts) -> None:
        for name in (SENT, SKIPPED, FAILED, DEAD_LETTERED):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "skipped": self.skipped, "failed": self.failed,
                "dead_lettered": self.dead_lettered}


@dataclass
class Channels:
    nudging: NudgingClient | None = None
    webhook: WebhookSender | None = None

    def send(self, channel: str, target: str | None, payload: dict[str, Any], idempotency_key: str) -> SendResult:
        if channel in (INGEST, SCHEDULED):
            if self.nudging is None:
                return SendResult("failed", None, 0, "nudging channel not configured")
            send = self.nudging.ingest_event if channel == INGEST else self.nudging.schedule_event
            return send(payload, idempotency_key)
        if channel == WEBHOOK:
            if self.webhook is None or not target:
                return SendResult("failed", None, 0, "webhook channel off (GRID_WEBHOOK_SECRET unset) or no URL")
            return self.webhook.send(target, payload, idempotency_key)
        return SendResult("rejected", None, 0, f"unknown delivery channel {channel!r}")

    def close(self) -> None:
        for sender in (self.nudging, self.webhook):
            if sender is not None:
                sender.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def channels_from_env(webhook_secret: str | None = None) -> Channels:
    """Nudging client from ``NUDGING_*``/``NUDGING_API_URL``; signed webhooks when a secret is given
    (``AlertConfig.webhook_secret``, i.e. ``GRID_WEBHOOK_SECRET``)."""
    policy = RetryPolicy.from_env()
    return Channels(NudgingClient.from_env(), WebhookSender(webhook_secret, policy) if webhook_secret else None)


def deliver_once(sessions: sessionmaker, channels: Channels, outgoing: Outgoing, *, max_attempts: int = 3,
                 lease_s: float = ledger.DEFAULT_LEASE_S) -> str:
    with sessions.begin() as session:
        claim = ledger.claim(session, outgoing.key, event_type=outgoing.event_type, channel=outgoing.channel,
                             recipient_key=outgoing.recipient_key, period=outgoing.period,
                             payload=outgoing.payload, network_id=outgoing.network_id, target=outgoing.target,
                             lease_s=lease_s)
    return _send_claimed(sessions, channels, claim, max_attempts)


def _send_claimed(sessions: sessionmaker, channels: Channels, claim: ledger.Claim, max_attempts: int) -> str:
    if not claim.won:
        if claim.status == ledger.DEAD_LETTER:
            return DEAD_LETTERED
        if claim.status not in ledger.DONE:
            log.info("delivery %s is being sent by another claimer; skipped", claim.key)
        return SKIPPED
    result = channels.send(claim.channel, claim.target, claim.payload, claim.idempotency_key)
    return record(sessions, claim.key, result, max_attempts=max_attempts)


def record(sessions: sessionmaker, key: str, result: SendResult, *, max_attempts: int) -> str:
    """Write a send's outcome to the ledger; returns the delivery's final state."""
    with sessions.begin() as session:
        if result.outcome == "sent":
            ledger.mark_sent(session, key, result.status_code)
            return SENT
        if result.outcome == "duplicate":
            ledger.mark_duplicate(session, key, result.status_code)
            return SKIPPED
        if result.outcome == "rejected":
            log.error("delivery %s rejected (%s); parked as dead letter", key, result.detail)
            ledger.park_dead_letter(session, key, result.detail or "rejected", status_code=result.status_code)
            return DEAD_LETTERED
        status = ledger.mark_failed(session, key, result.detail or "failed", status_code=result.status_code,
                                    max_attempts=max_attempts)
    if status == ledger.DEAD_LETTER:
        log.error("delivery %s failed on its last attempt (%s); parked as dead letter", key, result.detail)
        return DEAD_LETTERED
    log.warning("delivery %s failed (%s); will be retried", key, result.detail)
    return FAILED


def retry_due(sessions: sessionmaker, channels: Channels, *, event_type: str | None = None, max_attempts: int = 3,
              lease_s: float = ledger.DEFAULT_LEASE_S, limit: int = 500) -> DeliveryCounts:
    """Resend failed deliveries and those whose claimer died (stored payload, same idempotency key)."""
    counts = DeliveryCounts()
    with sessions.begin() as session:
        keys = ledger.due_for_retry(session, event_type=event_type, channels=CHANNELS, limit=limit)
    for key in keys:
        with sessions.begin() as session:
            row = ledger.get_delivery(session, key)
            assert row is not None
            claim = ledger.claim(session, key, event_type=row.event_type, channel=row.channel,
                                 recipient_key=row.recipient_key, period=row.period, payload=row.payload,
                                 network_id=row.network_id, target=row.target, lease_s=lease_s)
        counts.add(_send_claimed(sessions, channels, claim, max_attempts))
    return counts
