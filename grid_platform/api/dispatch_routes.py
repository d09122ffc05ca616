"""Dispatch history of a network (alerts-and-access.md §4): ``GET /api/grid/{network_id}/alert-dispatches``.

Reads the delivery ledger of the state database (grid risk reports and their webhooks), newest
period first. Access is the grid ``read`` action of the policy: a user sees only the network
of its own DSO organisation (another network answers 403), a service needs ``grid.read`` or
``grid.admin``. Recipient addresses, report bodies and webhook URLs are not exposed: a row names
its recipient group by key (the synthetic ``email-ingest:…`` id, or the rule owner's ``sub``).
"""

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, PlainSerializer, WithJsonSchema
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from grid_platform.alerts.report import SCENARIO
from grid_platform.api.policy import PolicyEngine
from grid_platform.api.routes import read_access
from grid_platform.store.dispatch import STATUSES, Delivery

MAX_LIMIT = 500
Timestamp = Annotated[dt.datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time"})]
Status = Literal[STATUSES]  # type: ignore[valid-type]


class Dispatch(BaseModel):
    key: str
    network_id: str
    period: str
    recipient_key: str
    channel: str
    status: Status
    attempts: int
    status_code: int | None
    last_error: str | None
    threshold: str | None
    risk_types: list[str]
    dates: list[str]
    sent_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class DispatchPage(BaseModel):
    items: list[Dispatch]
    limit: int
    offset: int
    count: int
    total: int


def _dispatch_out(row: Delivery) -> Dispatch:
    facts = (row.payload or {}).get("facts") or {}
    return Dispatch(key=row.key, network_id=row.network_id or "", period=row.period,
                    recipient_key=row.recipient_key, channel=row.channel, status=row.status, attempts=row.attempts,
                    status_code=row.status_code, last_error=(row.last_error or "")[:500] or None,
                    threshold=facts.get("threshold"), risk_types=list(facts.get("risk_types") or []),
                    dates=list(facts.get("dates") or []), sent_at=row.sent_at, created_at=row.created_at,
                    updated_at=row.updated_at)


def dispatch_router(policy: PolicyEngine, sessions: sessionmaker) -> APIRouter:
    router = APIRouter(prefix="/api/grid", tags=["alerts"], responses={
        401: {"description": "Missing, expired or invalid token"},
        403: {"description": "Refused by the access policy (reason in detail)"},
    })

    @router.get("/{network_id}/alert-dispatches", response_model=DispatchPage)
    def alert_dispatches(
        network_id: Annotated[str, Depends(read_access(policy))],
        period_from: Annotated[dt.date | None, Query(description="First run date (inclusive)")] = None,
        period_to: Annotated[dt.date | None, Query(description="Last run date (inclusive)")] = None,
        status: Annotated[Status | None, Query(description="Only deliveries in this state")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Grid risk reports sent, de-duplicated, failing or parked for the network, newest run date first."""
        query = select(Delivery).where(Delivery.network_id == network_id, Delivery.event_type == SCENARIO)
        # Periods of grid risk reports are ISO dates, so text order is date order.
        if period_from is not None:
            query = query.where(Delivery.period >= period_from.isoformat())
        if period_to is not None:
            query = query.where(Delivery.period <= period_to.isoformat())
        if status is not None:
            query = query.where(Delivery.status == status)
        with sessions.begin() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(query.order_by(Delivery.period.desc(), Delivery.recipient_key, Delivery.key)
                                   .limit(limit).offset(offset)).all()
            items = [_dispatch_out(r) for r in rows]
        return {"items": items, "limit": limit, "offset": offset, "count": len(items), "total": total}

    return router
