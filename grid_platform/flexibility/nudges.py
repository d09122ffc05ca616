"""Nudge events of the flexibility domain (flexibility.md §5): pure builders.

An event is ``{event_type, user_id, community_id?, external_key?, trigger_at?, facts}``; the
facts carry ``facts_version "1.0"`` and ``scenario = event_type``, times as ``HH:MM`` in UTC,
``period`` as the UTC date ``YYYY-MM-DD`` of the window start, and numbers as strings.
Each event also names its delivery-ledger key, which makes it at most one delivery:

| event | ledger key (``store.dispatch.delivery_key`` layout) |
|---|---|
| reminder scheduled on accept | ``flexibility-accept:{user}:{suggestion}`` + ``|{commitment_id}`` |
| reminder sent at once on accept | ``flexibility_reminder|{community}|{user}|accept:{commitment_id}`` |
| in-window reminder (sweep) | ``flexibility_reminder|{community}|{user}|window:{commitment_id}`` |
| ``flexibility_committed`` | ``flexibility_committed|{community}|{user}|{commitment_id}`` |
| ``commitment_settled`` | ``commitment_settled|{community}|{user}|{commitment_id}`` |
| ``flexibility_opportunity`` | ``flexibility_opportunity|{community}|{user}|{YYYY-MM-DD}`` (daily per user) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pandas as pd

from grid_platform.flexibility.participants import Participant, iter_pages
from grid_platform.store.dispatch import delivery_key

FACTS_VERSION = "1.0"
REMINDER = "flexibility_reminder"
OPPORTUNITY = "flexibility_opportunity"
COMMITTED_EVENT = "flexibility_committed"
SETTLED_EVENT = "commitment_settled"
INGEST, SCHEDULED = "ingest", "scheduled"


class CommitmentLike(Protocol):
    id: Any
    user_id: str
    suggestion_id: str
    community_id: str | None
    period_start: datetime
    period_end: datetime
    reward_points_estimated: int


@dataclass(frozen=True)
class NudgeEvent:
    event_type: str
    user_id: str
    facts: dict[str, str]
    ledger_key: str
    period: str
    community_id: str | None = None
    external_key: str | None = None
    trigger_at: datetime | None = None

    @property
    def channel(self) -> str:
        """Scheduled events go to ``/admin/scheduled-events``, the rest to ``/admin/ingest-event``."""
        return SCHEDULED if self.trigger_at is not None else INGEST

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"event_type": self.event_type, "user_id": self.user_id,
                                "community_id": self.community_id, "facts": dict(self.facts)}
        if self.trigger_at is not None:
            body["external_key"] = self.external_key
            body["trigger_at"] = self.trigger_at.astimezone(UTC).isoformat()
        return body


def hhmm(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H:%M")


def period_of(value: datetime) -> str:
    return value.astimezone(UTC).date().isoformat()


def number(value: float | None) -> str:
    """A number as facts want it: a string, integers plain, at most 3 decimals."""
    if value is None:
        return ""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{float(value):.3f}".rstrip("0").rstrip(".")


def facts(event_type: str, **values: str) -> dict[str, str]:
    return {"facts_version": FACTS_VERSION, "scenario": event_type, **values}


def accept_external_key(user_id: str, suggestion_id: str) -> str:
    return f"flexibility-accept:{user_id}:{suggestion_id}"


def _reminder_facts(c: CommitmentLike) -> dict[str, str]:
    return facts(REMINDER, commitment_id=str(c.id), suggestion_id=c.suggestion_id,
                 window_start=hhmm(c.period_start), window_end=hhmm(c.period_end),
                 reward_points_estimated=number(c.reward_points_estimated), period=period_of(c.period_start))


def accept_reminder(c: CommitmentLike, now: datetime, lead: timedelta = timedelta(minutes=30)) -> NudgeEvent:
    """§5.1: scheduled at ``window_start − lead``, or sent at once when that moment has passed."""
    trigger_at = c.period_start - lead
    period = period_of(c.period_start)
    if trigger_at <= now:
        return NudgeEvent(REMINDER, c.user_id, _reminder_facts(c), period=period, community_id=c.community_id,
                          ledger_key=delivery_key(REMINDER, c.community_id, c.user_id, f"accept:{c.id}"))
    external = accept_external_key(c.user_id, c.suggestion_id)
    return NudgeEvent(REMINDER, c.user_id, _reminder_facts(c), period=period, community_id=c.community_id,
                      external_key=external, trigger_at=trigger_at, ledger_key=f"{external}|{c.id}")


def window_reminder(c: CommitmentLike) -> NudgeEvent:
    """§5.2: the in-window reminder of the sweep."""
    return NudgeEvent(REMINDER, c.user_id, _reminder_facts(c), period=period_of(c.period_start),
                      community_id=c.community_id,
                      ledger_key=delivery_key(REMINDER, c.community_id, c.user_id, f"window:{c.id}"))


def committed_event(c: CommitmentLike) -> NudgeEvent:
    return NudgeEvent(COMMITTED_EVENT, c.user_id,
                      facts(COMMITTED_EVENT, commitment_id=str(c.id), window_start=hhmm(c.period_start),
                            window_end=hhmm(c.period_end), period=period_of(c.period_start)),
                      period=period_of(c.period_start), community_id=c.community_id,
                      ledger_key=delivery_key(COMMITTED_EVENT, c.community_id, c.user_id, str(c.id)))


def settled_event(c: CommitmentLike, *, actual_kwh: float | None, reward_points_actual: int) -> NudgeEvent:
    """§5.4 ``commitment_settled``: de-duplicated per commitment."""
    return NudgeEvent(SETTLED_EVENT, c.user_id,
                      facts(SETTLED_EVENT, commitment_id=str(c.id), actual_kwh=number(actual_kwh),
                            reward_points_actual=number(reward_points_actual), period=period_of(c.period_start)),
                      period=period_of(c.period_start), community_id=c.community_id,
                      ledger_key=delivery_key(SETTLED_EVENT, c.community_id, c.user_id, str(c.id)))


def opportunity_events(community_pages: Callable[[int, int], list[str]],
                       member_pages: Callable[[str, int, int], list[Participant]],
                       forecast_windows: Callable[[str], pd.DataFrame], *, page_size: int = 100) -> list[NudgeEvent]:
    """§5.3 for every community of the registry (paged): its earliest ``forecast`` window, to each member.

    ``forecast_windows(community_id)`` gives the community's forecast windows (§1.2); a
    community without one gets nothing. A member is reached through ``user_id``, else
    ``owner_user_id``; each account once per community and day.
    """
    events: list[NudgeEvent] = []
    for community in iter_pages(community_pages, page_size):
        windows = forecast_windows(community)
        if windows is None or windows.empty:
            continue
        first = windows.sort_values(["window_start", "window_id"]).iloc[0]
        start, end = first["window_start"].to_pydatetime(), first["window_end"].to_pydatetime()
        kwh = float(first["estimated_kwh"])
        reward = first["reward_points_estimated"]
        reward = round(kwh * 10) if reward is None or pd.isna(reward) else int(reward)
        period = period_of(start)
        seen: set[str] = set()
        for member in iter_pages(lambda o, n, c=community: member_pages(c, o, n), page_size):
            user = member.recipient
            if user in seen:
                continue
            seen.add(user)
            events.append(NudgeEvent(
                OPPORTUNITY, user,
                facts(OPPORTUNITY, window_start=hhmm(start), window_end=hhmm(end), estimated_kwh=number(kwh),
                      reward_points=number(reward), period=period),
                period=period, community_id=community,
                ledger_key=delivery_key(OPPORTUNITY, community, user, period)))
    return events


def committed_message(c: CommitmentLike, device_id: str | None) -> dict[str, Any]:
    """§6 MQTT payload on accept (ISO timestamps)."""
    return {"user_id": c.user_id, "community_id": c.community_id, "commitment_id": str(c.id),
            "device_id": device_id, "window_start": c.period_start.astimezone(UTC).isoformat(),
            "window_end": c.period_end.astimezone(UTC).isoformat(),
            "reward_points_estimated": c.reward_points_estimated}


def committed_topic(prefix: str, user_id: str) -> str:
    return f"{prefix}/flexibility/committed/{user_id}"

