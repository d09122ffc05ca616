"""Pipeline-run events that trigger alert dispatch (alerts-and-access.md §4): parsing, filters,
horizon and networks. Pure, except ``record_run_events`` (the processed-events table).

Payload (topic ``celine/pipelines/runs/{namespace}``, QoS 1, not retained)::

    {"flow": str, "namespace": str, "status": "started"|"completed"|"failed", "run_id": str,
     "timestamp": ISO-8601 str, "duration_ms": int|null, "error": str|null}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import sessionmaker

from grid_platform.alerts.config import AlertConfig
from grid_platform.store import dispatch as ledger

log = logging.getLogger(__name__)

RUN_TOPIC_PREFIX = "celine/pipelines/runs"
RUN_TOPIC_FILTER = RUN_TOPIC_PREFIX + "/+"
STATUSES = ("started", "completed", "failed")
COMPLETED = "completed"


@dataclass(frozen=True)
class PipelineRunEvent:
    flow: str
    namespace: str
    status: str
    run_id: str
    timestamp: str | None
    duration_ms: int | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        """Processed-events key: one run's status is handled once."""
        return ledger.event_key(self.run_id, self.status)

    @property
    def topic(self) -> str:
        return f"{RUN_TOPIC_PREFIX}/{self.namespace}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_date(self, today: date | None = None) -> date:
        """Date part of ``timestamp`` as written; unreadable -> today (UTC)."""
        text = (self.timestamp or "").strip()
        for parse in (lambda t: datetime.fromisoformat(t).date(), lambda t: date.fromisoformat(t[:10])):
            try:
                return parse(text)
            except ValueError:
                continue
        return today or datetime.now(UTC).date()


class InvalidEvent(ValueError):
    pass


def _required_text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _optional(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise InvalidEvent(f"{name} must be {kind.__name__} or null, got {value!r}")
    return value


def validate_run_event(data: Any) -> PipelineRunEvent:
    """The event of a decoded payload; ``InvalidEvent`` naming the first bad field."""
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"payload must be a JSON object, got {type(data).__name__}")
    status = _required_text(data, "status")
    if status not in STATUSES:
        raise InvalidEvent(f"status must be one of {STATUSES}, got {status!r}")
    return PipelineRunEvent(flow=_required_text(data, "flow"), namespace=_required_text(data, "namespace"),
                            status=status, run_id=_required_text(data, "run_id"),
                            timestamp=_optional(data, "timestamp", str), duration_ms=_optional(data, "duration_ms", int),
                            error=_optional(data, "error", str))


def parse_run_event(payload: bytes | str | Mapping[str, Any], *, topic: str | None = None) -> PipelineRunEvent | None:
    """The event, or None after logging why the message is dropped. Never raises."""
    try:
        data = json.loads(payload) if isinstance(payload, bytes | bytearray | str) else payload
        return validate_run_event(data)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        preview = payload[:200] if isinstance(payload, bytes | str) else repr(payload)[:200]
        log.warning("dropping unparseable pipeline-run message on %s: %s (%r)", topic or "?", exc, preview)
        return None


def skip_reason(event: PipelineRunEvent, config: AlertConfig) -> str | None:
    """Why this event does not dispatch (filters in §4 order), or None when it does."""
    if event.status != COMPLETED:
        return f"status {event.status!r} is not completed"
    if event.flow != config.pipeline_flow:
        return f"flow {event.flow!r} is not {config.pipeline_flow!r}"
    if not config.enabled:
        log.info("grid alerts disabled (GRID_ALERTS_ENABLED=false): not dispatching flow %s namespace %s",
                 event.flow, event.namespace)
        return "alerts disabled (GRID_ALERTS_ENABLED=false)"
    return None


def horizon_dates(run_date: date, horizon_days: int) -> list[date]:
    """The run date and the following ``horizon_days - 1`` days (none when 0)."""
    return [run_date + timedelta(days=k) for k in range(max(horizon_days, 0))]


def is_grid_namespace(namespace: str, grid_namespace: str) -> bool:
    return namespace == grid_namespace or namespace.endswith("." + grid_namespace)


def target_networks(namespace: str, config: AlertConfig, rule_networks: Callable[[], Iterable[str]]) -> list[str]:
    """The grid namespace -> every network with an active rule (sorted); else the namespace itself."""
    if is_grid_namespace(namespace, config.pipeline_namespace):
        return sorted({n for n in rule_networks() if n})
    return [namespace]


def grid_run_event(run_id: str, finished_at: datetime, config: AlertConfig, *, status: str = COMPLETED,
                   duration_ms: int | None = None, error: str | None = None) -> PipelineRunEvent:
    """The event equivalent to a finished Dagster run of the grid risk job (run-status sensor, schedule)."""
    if finished_at.tzinfo is None:
        raise ValueError("finished_at must be timezone-aware")
    return PipelineRunEvent(flow=config.pipeline_flow, namespace=config.pipeline_namespace, status=status,
                            run_id=run_id, timestamp=finished_at.astimezone(UTC).isoformat(),
                            duration_ms=duration_ms, error=error)


@dataclass
class RecordedEvents:
    new: list[PipelineRunEvent] = field(default_factory=list)
    already_seen: int = 0
    dropped: int = 0


def record_run_events(sessions: sessionmaker, payloads: Iterable[bytes | str | Mapping[str, Any]], *,
                      source: str = "mqtt") -> RecordedEvents:
    """Parse and record inbound run events (insert-if-absent by ``run_id|status``), one transaction.

    Redelivered messages come back as ``already_seen``; unparseable ones are logged and
    ``dropped``. Ack the messages only after this returned.
    """
    result = RecordedEvents()
    with sessions.begin() as session:
        for payload in payloads:
            event = parse_run_event(payload)
            if event is None:
                result.dropped += 1
            elif ledger.record_event(session, event.key, source=source, run_id=event.run_id, flow=event.flow,
                                     namespace=event.namespace, status=event.status, payload=event.as_dict()):
                result.new.append(event)
            else:
                result.already_seen += 1
    return result
