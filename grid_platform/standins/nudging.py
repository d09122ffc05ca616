"""Local stand-in of the CELINE nudging tool's admin API (spec: alerts-and-access.md §5).

- `POST /admin/ingest-event` `{event_type, user_id, community_id?, timestamp?, payload?, facts}`:
  200 delivered; 202 created, deliveries suppressed (user opted out, see below); 204 no rule
  triggered (a `grid_risk_report` without any `days[].vectors[].top_lines`); 400 unknown
  scenario; 409 every matching rule de-duplicated; 422 missing/invalid fields or facts.
- `POST /admin/scheduled-events`: the same event plus `external_key` and `trigger_at`
  (ISO with offset), upserted by `external_key` (201 created, 200 rescheduled).
- `GET /health`.

Rules: one per scenario, selected by `event_type` (= `facts.scenario`), each with its required
facts and a dedup window. The dedup key is `{rule_id}:{user_id}:{community_id or ""}:{scope}`,
where scope is the time scope (`time|date|week|period`, first present; its format must
match the window: daily `YYYY-MM-DD`, weekly `YYYY-Www`, monthly `YYYY-MM`, yearly `YYYY`),
or the `commitment_id` for per-commitment rules; rules without window never de-duplicate.

Requests carrying an `Idempotency-Key` header are answered once: a repeat with the same key
and the same JSON body replays the first answer (header `Idempotent-Replayed: true`) without
delivering again; the same key with another body is refused with 422. Only final answers
(2xx, 409) are remembered, so a request that failed may be retried under its key.

A `Bearer` token is checked when the app has one (`create_app(token=...)` or
`$NUDGING_STANDIN_TOKEN`); a doubled `Bearer Bearer` prefix is always refused (401).

Control routes (never faulted): `GET /_standin/deliveries` (filters `event_type`, `user_id`,
`community_id`) lists every delivered event, `DELETE /_standin/deliveries` forgets all state
(deliveries, events, dedup and idempotency memory, schedule); `GET /_standin/events` lists
every accepted request with its answer; `GET /_standin/scheduled`; `POST
/_standin/scheduled/fire` `{"now"?: ISO}` delivers the due scheduled events;
`PUT /_standin/suppressed` `{"user_ids": [...]}` makes those users' events answer 202.
Faults come from `faults.install_faults` on `/admin/...` (`/_standin/faults`, `/reset`,
`/stats`).

This module shares no code with the platform's nudging client on purpose.

Run: `python -m grid_platform.standins.nudging` (port `$PORT`, else 8104).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from grid_platform.settings import STANDIN_PORTS
from grid_platform.standins.faults import FaultConfig, install_faults
from grid_platform.standins.server import serve

TOKEN_ENV = "NUDGING_STANDIN_TOKEN"
TIME_SCOPE_FIELDS = ("time", "date", "week", "period")
SCOPE_FORMATS = {
    "daily": re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"),
    "weekly": re.compile(r"^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$"),
    "monthly": re.compile(r"^\d{4}-(0[1-9]|1[0-2])$"),
    "yearly": re.compile(r"^\d{4}$"),
}


@dataclass(frozen=True)
class Rule:
    rule_id: str
    required: tuple[str, ...]
    dedup: str  # a SCOPE_FORMATS window, "commitment" (scope = commitment_id) or "none"


def _has_top_lines(facts: dict[str, Any]) -> bool:
    days = facts.get("days")
    if not isinstance(days, list):
        return False
    return any(isinstance(vector, dict) and vector.get("top_lines")
               for day in days if isinstance(day, dict)
               for vector in (day.get("vectors") or []))


RULES: dict[str, Rule] = {
    "grid_risk_report": Rule("grid-risk-report-daily", ("period", "threshold"), "daily"),
    "extr_event": Rule("extreme-event-daily", ("period", "window_start", "window_end", "event_type"), "daily"),
    "flexibility_reminder": Rule("flexibility-reminder-daily",
                                 ("window_start", "window_end", "reward_points_estimated", "period"), "daily"),
    "flexibility_opportunity": Rule("flexibility-opportunity-daily",
                                    ("window_start", "window_end", "estimated_kwh", "reward_points", "period"),
                                    "daily"),
    "flexibility_committed": Rule("flexibility-committed", ("commitment_id", "window_start", "window_end"), "none"),
    "commitment_settled": Rule("commitment-settled",
                               ("commitment_id", "actual_kwh", "reward_points_actual", "period"), "commitment"),
}


class Refused(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


@dataclass
class State:
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    dedup_keys: set[str] = field(default_factory=set)
    answers: dict[str, tuple[str, int, Any]] = field(default_factory=dict)  # idempotency key -> (hash, status, body)
    scheduled: dict[str, dict[str, Any]] = field(default_factory=dict)
    suppressed: set[str] = field(default_factory=set)
    next_id: int = 1

    def clear(self) -> None:
        self.deliveries.clear()
        self.events.clear()
        self.dedup_keys.clear()
        self.answers.clear()
        self.scheduled.clear()
        self.suppressed.clear()
        self.next_id = 1


def _aware_iso(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise Refused(422, f"{name} must be an ISO-8601 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(422, f"{name} is not ISO-8601: {value!r}") from None
    if moment.tzinfo is None:
        raise Refused(422, f"{name} needs a UTC offset: {value!r}")
    return moment


def _check_event(body: Any) -> tuple[Rule, str | None]:
    """Validate an event; returns its rule and dedup scope (None: no de-duplication)."""
    if not isinstance(body, dict):
        raise Refused(422, "body must be a JSON object")
    event_type = body.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise Refused(422, "event_type must be a non-empty string")
    rule = RULES.get(event_type)
    if rule is None:
        raise Refused(400, f"unknown scenario {event_type!r}")
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise Refused(422, "user_id must be a non-empty string")
    if body.get("community_id") is not None and not isinstance(body["community_id"], str):
        raise Refused(422, "community_id must be a string or null")
    if body.get("timestamp") is not None:
        _aware_iso(body["timestamp"], "timestamp")
    if body.get("payload") is not None and not isinstance(body["payload"], dict):
        raise Refused(422, "payload must be an object")
    facts = body.get("facts")
    if not isinstance(facts, dict):
        raise Refused(422, "facts must be an object")
    for name in ("facts_version", "scenario"):
        if not isinstance(facts.get(name), str) or not facts[name].strip():
            raise Refused(422, f"facts.{name} must be a non-empty string")
    if facts["scenario"] != event_type:
        raise Refused(422, f"facts.scenario {facts['scenario']!r} does not match event_type {event_type!r}")
    missing = [name for name in rule.required if facts.get(name) in (None, "", [], {})]
    if missing:
        raise Refused(422, {"message": "missing facts", "missing": missing})
    if rule.dedup == "none":
        return rule, None
    if rule.dedup == "commitment":
        return rule, str(facts["commitment_id"])
    scope_field = next((name for name in TIME_SCOPE_FIELDS if facts.get(name) not in (None, "")), None)
    if scope_field is None:
        raise Refused(422, f"facts need a time scope ({'|'.join(TIME_SCOPE_FIELDS)})")
    scope = facts[scope_field]
    if not isinstance(scope, str) or not SCOPE_FORMATS[rule.dedup].match(scope):
        raise Refused(422, f"facts.{scope_field} {scope!r} does not match the {rule.dedup} window of rule "
                           f"{rule.rule_id}")
    return rule, scope


def _canonical(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def create_app(faults: FaultConfig | None = None, *, token: str | None = None) -> FastAPI:
    """The nudging stand-in. `faults`: start-up faults (None: `$STANDIN_FAULTS`, else none)."""
    app = FastAPI(title="Nudging tool stand-in", docs_url=None, redoc_url=None)
    state = State()
    expected_token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    install_faults(app, faults, data_prefixes=("/admin/",), on_reset=[state.clear])

    def authorize(request: Request) -> None:
        header = request.headers.get("authorization")
        if header is None:
            if expected_token is not None:
                raise Refused(401, "missing bearer token")
            return
        scheme, _, value = header.partition(" ")
        if scheme != "Bearer" or not value or value.startswith("Bearer"):
            raise Refused(401, "malformed Authorization header (exactly one 'Bearer ' prefix)")
        if expected_token is not None and value != expected_token:
            raise Refused(401, "invalid token")

    def answer(status: int, content: Any, replayed: bool = False) -> Response:
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse(content, status_code=status, headers=headers)

    def ingest(body: dict[str, Any], rule: Rule, scope: str | None, source: str, idempotency_key: str | None
               ) -> tuple[int, Any]:
        """Deliver a validated event (or explain why not)."""
        event_id = f"evt-{state.next_id:06d}"
        state.next_id += 1
        facts = body["facts"]
        record = {"event_id": event_id, "event_type": body["event_type"], "rule_id": rule.rule_id,
                  "user_id": body["user_id"], "community_id": body.get("community_id"), "scope": scope,
                  "source": source, "idempotency_key": idempotency_key,
                  "email_recipients": facts.get("email_recipients"), "facts": facts,
                  "received_at": datetime.now(UTC).isoformat()}
        if body["event_type"] == "grid_risk_report" and not _has_top_lines(facts):
            status, content = 204, None
        else:
            dedup_key = None if scope is None else \
                f"{rule.rule_id}:{body['user_id']}:{body.get('community_id') or ''}:{scope}"
            record["dedup_key"] = dedup_key
            if dedup_key is not None and dedup_key in state.dedup_keys:
                status, content = 409, {"detail": "all matching rules de-duplicated", "dedup_key": dedup_key}
            else:
                if dedup_key is not None:
                    state.dedup_keys.add(dedup_key)
                if body["user_id"] in state.suppressed:
                    status, content = 202, {"event_id": event_id, "status": "suppressed", "deliveries": 0}
                else:
                    state.deliveries.append(record)
                    status, content = 200, {"event_id": event_id, "status": "delivered", "deliveries": 1}
        state.events.append({**record, "answer": status})
        return status, content

    async def handle(request: Request, scheduled: bool) -> Response:
        # No await between the checks and the state change: requests are handled atomically.
        raw = await request.body()
        try:
            authorize(request)
            try:
                body = json.loads(raw)
            except ValueError:
                raise Refused(400, "body is not JSON") from None
            key = request.headers.get("idempotency-key")
            fingerprint = _canonical([request.url.path, body])
            if key is not None and key in state.answers:
                seen_hash, status, content = state.answers[key]
                if seen_hash != fingerprint:
                    raise Refused(422, "Idempotency-Key reused with a different request")
                return answer(status, content, replayed=True)
            rule, scope = _check_event(body)
            if scheduled:
                external_key = body.get("external_key")
                if not isinstance(external_key, str) or not external_key:
                    raise Refused(422, "external_key must be a non-empty string")
                trigger_at = _aware_iso(body.get("trigger_at"), "trigger_at")
                status = 200 if external_key in state.scheduled else 201
                state.scheduled[external_key] = {"body": body, "trigger_at": trigger_at.isoformat(),
                                                 "idempotency_key": key}
                content = {"external_key": external_key, "status": "rescheduled" if status == 200 else "scheduled",
                           "trigger_at": trigger_at.isoformat()}
            else:
                status, content = ingest(body, rule, scope, "ingest", key)
        except Refused as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        if key is not None:
            state.answers[key] = (fingerprint, status, content)
        return answer(status, content)

    @app.post("/admin/ingest-event")
    async def ingest_event(request: Request) -> Response:
        return await handle(request, scheduled=False)

    @app.post("/admin/scheduled-events")
    async def scheduled_events(request: Request) -> Response:
        return await handle(request, scheduled=True)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_standin/deliveries")
    async def list_deliveries(event_type: str | None = None, user_id: str | None = None,
                              community_id: str | None = None) -> dict[str, Any]:
        rows = [d for d in state.deliveries
                if (event_type is None or d["event_type"] == event_type)
                and (user_id is None or d["user_id"] == user_id)
                and (community_id is None or d["community_id"] == community_id)]
        return {"count": len(rows), "deliveries": rows}

    @app.delete("/_standin/deliveries")
    async def clear() -> Response:
        state.clear()
        return Response(status_code=204)

    @app.get("/_standin/events")
    async def list_events() -> dict[str, Any]:
        return {"count": len(state.events), "events": state.events}

    @app.get("/_standin/scheduled")
    async def list_scheduled() -> dict[str, Any]:
        return {"count": len(state.scheduled), "scheduled": state.scheduled}

    @app.post("/_standin/scheduled/fire")
    async def fire(request: Request) -> Response:
        raw = await request.body()
        try:
            options = json.loads(raw) if raw else {}
            now = _aware_iso(options["now"], "now") if options.get("now") else datetime.now(UTC)
        except (ValueError, TypeError, AttributeError, Refused) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        fired = []
        for external_key, entry in sorted(state.scheduled.items()):
            if datetime.fromisoformat(entry["trigger_at"]) <= now:
                rule, scope = _check_event(entry["body"])
                status, _ = ingest(entry["body"], rule, scope, "scheduled", entry["idempotency_key"])
                fired.append({"external_key": external_key, "answer": status})
                del state.scheduled[external_key]
        return JSONResponse({"fired": fired})

    @app.put("/_standin/suppressed")
    async def suppress(request: Request) -> Response:
        try:
            user_ids = json.loads(await request.body())["user_ids"]
            if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
                raise TypeError("user_ids must be a list of strings")
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        state.suppressed = set(user_ids)
        return JSONResponse({"user_ids": sorted(state.suppressed)})

    return app


def main() -> None:
    port = int(os.environ.get("PORT") or STANDIN_PORTS["nudging"])
    serve(create_app(), port)


if __name__ == "__main__":
    main()
