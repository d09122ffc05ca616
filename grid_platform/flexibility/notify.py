"""Side effects of the flexibility domain: nudges and MQTT messages through the delivery ledger.

Nudges (``nudges.NudgeEvent``) go through ``alerts.delivery.deliver_once`` (ledger
``store.dispatch``, ``Idempotency-Key = sha256(ledger key)``, 409 = already there). MQTT
messages are recorded in the same ledger (channel ``mqtt``, target = topic) around
``alerts.mqtt.publish`` (QoS 1, waits for the PUBACK). Nothing here raises for a delivery
problem: failures are logged and recorded, so an API answer or a settlement never fails
because of a side effect.

Also: the in-window sweep (§5.2: stamp ``reminded_at`` and commit, then send once) and the
settled nudges (§5.4) of a settlement batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.orm import sessionmaker

from grid_platform.alerts import mqtt
from grid_platform.alerts.delivery import DEAD_LETTERED, SENT, SKIPPED, Channels, Outgoing, deliver_once
from grid_platform.flexibility import nudges
from grid_platform.flexibility.settlement import SettlementReport, settle_day
from grid_platform.store import dispatch as ledger
from grid_platform.store import flexibility as store

log = logging.getLogger(__name__)

MQTT_CHANNEL = "mqtt"
OFF = "off"
Publish = Callable[..., bool]


@dataclass
class Notifier:
    """Delivers through the ledger in ``sessions`` (the state database).

    ``channels.nudging`` None: nudges are off. ``mqtt_url`` None: MQTT is off (§6).
    ``notify_committed``: send ``flexibility_committed`` on accept (when the nudging target
    is configured explicitly, §5.4).
    """

    sessions: sessionmaker
    channels: Channels
    mqtt_url: str | None = None
    topic_prefix: str = "celine"
    notify_committed: bool = False
    max_attempts: int = 3
    lease_s: float = ledger.DEFAULT_LEASE_S
    publish: Publish = mqtt.publish

    def send(self, event: nudges.NudgeEvent, *, max_attempts: int | None = None) -> str:
        if self.channels.nudging is None:
            return OFF
        outgoing = Outgoing(key=event.ledger_key, event_type=event.event_type, channel=event.channel,
                            recipient_key=event.user_id, period=event.period, payload=event.body(),
                            network_id=event.community_id)
        try:
            return deliver_once(self.sessions, self.channels, outgoing, max_attempts=max_attempts or self.max_attempts,
                                lease_s=self.lease_s)
        except Exception:  # a ledger write failed: logged, never raised into the caller
            log.exception("nudge %s (%s) not delivered", event.event_type, event.ledger_key)
            return "error"

    def publish_committed(self, commitment: nudges.CommitmentLike, device_id: str | None) -> str:
        """§6: ``{prefix}/flexibility/committed/{user_id}``, QoS 1, once per commitment."""
        if not self.mqtt_url:
            return OFF
        topic = nudges.committed_topic(self.topic_prefix, commitment.user_id)
        payload = nudges.committed_message(commitment, device_id)
        key = f"mqtt|{topic}|{commitment.id}"
        try:
            with self.sessions.begin() as session:
                claim = ledger.claim(session, key, event_type="flexibility_committed_mqtt", channel=MQTT_CHANNEL,
                                     recipient_key=commitment.user_id, period=nudges.period_of(commitment.period_start),
                                     payload=payload, network_id=commitment.community_id, target=topic,
                                     lease_s=self.lease_s)
            if not claim.won:
                return SKIPPED
            try:
                self.publish(self.mqtt_url, topic, claim.payload, qos=1)
            except Exception as exc:  # noqa: BLE001 - broker down, no PUBACK: logged, the request goes on
                log.warning("MQTT publish to %s failed: %s", topic, exc)
                with self.sessions.begin() as session:
                    ledger.park_dead_letter(session, key, f"{type(exc).__name__}: {exc}")
                return DEAD_LETTERED
            with self.sessions.begin() as session:
                ledger.mark_sent(session, key, None)
            return SENT
        except Exception:
            log.exception("MQTT message for commitment %s not recorded", commitment.id)
            return "error"

    def on_accept(self, commitment: nudges.CommitmentLike, device_id: str | None, now: datetime,
                  lead: timedelta) -> dict[str, str]:
        """§2 accept side effects: MQTT, the pre-window reminder, optionally ``flexibility_committed``."""
        outcome = {"mqtt": self.publish_committed(commitment, device_id),
                   "reminder": self.send(nudges.accept_reminder(commitment, now, lead))}
        if self.notify_committed:
            outcome["committed"] = self.send(nudges.committed_event(commitment))
        return outcome

    def settled(self, rows: Sequence[nudges.CommitmentLike]) -> dict[str, int]:
        """§5.4 ``commitment_settled`` for settled rows (de-duplicated per commitment by the ledger)."""
        counts: dict[str, int] = {}
        for row in rows:
            state = self.send(nudges.settled_event(row, actual_kwh=getattr(row, "actual_kwh", None),
                                                   reward_points_actual=row.reward_points_actual))
            counts[state] = counts.get(state, 0) + 1
        return counts


def sweep_reminders(sessions: sessionmaker, notifier: Notifier, now: datetime) -> dict[str, int]:
    """§5.2: stamp ``reminded_at`` on the ``/pending`` rows and commit, then send one reminder each.

    At most once: the stamp is committed before sending and a failed send is parked, never
    retried (``max_attempts=1``).
    """
    with store.write_transaction(sessions) as session:
        rows = store.claim_pending(session, now)
    counts: dict[str, int] = {}
    for row in rows:
        state = notifier.send(nudges.window_reminder(row), max_attempts=1)
        counts[state] = counts.get(state, 0) + 1
    return {"claimed": len(rows), **counts}


def settle_and_notify(sessions: sessionmaker, notifier: Notifier | None, day: date, readings: pd.DataFrame,
                      **options: Any) -> tuple[SettlementReport, dict[str, int]]:
    """The settlement job body: ``settle_day``, then ``commitment_settled`` for every row settled for ``day``.

    The nudges cover all rows the ledger holds for ``day``, not only this run's: a run that
    crashed after a batch commit but before its nudges leaves them to the next run, and the
    delivery ledger skips the ones already sent.
    """
    report = settle_day(sessions, day, readings, **options)
    if notifier is None:
        return report, {}
    with sessions() as session:
        rows = store.settled_for_day(session, day)
    return report, notifier.settled(rows)
