"""Flexibility API (flexibility.md §2, §4, §7, §8): suggestions, commitments, gamification.

Include with ``app.include_router(build_flexibility_router(settings, config, engine))`` in
``create_app`` (after the state database is migrated); the router relies on the app's
authentication gate (``request.state.principal`` / ``token_key``) and the policy bundle in
``config.policy_dir`` (package ``celine.flexibility.access``, fail closed).

Isolation: user queries always filter on the token ``sub``; another user's row answers 404.
Route order: ``/pending`` and ``/export`` are declared before ``/{commitment_id}``.
Side effects of accept and settle (MQTT, reminders, nudges) run after the answer (background
tasks) and never change it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

import pandas as pd
from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from grid_platform.alerts.delivery import Channels
from grid_platform.alerts.nudging import NudgingClient
from grid_platform.api.config import ApiConfig
from grid_platform.api.identity import Principal
from grid_platform.flexibility import gamification, publications
from grid_platform.flexibility.access import FlexibilityPolicy
from grid_platform.flexibility.config import FlexibilityConfig, load_flexibility_config
from grid_platform.flexibility.notify import Notifier
from grid_platform.flexibility.participants import Membership, ParticipantRegistry
from grid_platform.flexibility.suggestions import SUGGESTION_TYPE, build_suggestions, suggestion_dates
from grid_platform.settings import Settings
from grid_platform.store import flexibility as store

log = logging.getLogger(__name__)

DEFAULT_REWARD = 10
DEFAULT_PERIOD = timedelta(hours=1)
Status = Literal["committed", "settled", "cancelled", "rejected"]
Timestamp = Annotated[datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time"})]


class Directory(Protocol):
    """Profile membership (§2 step 1): the caller's community and device, best effort."""

    def membership(self, user_id: str) -> Membership | None: ...


WindowsSource = Callable[[str, list[date]], pd.DataFrame]
ScoringSource = Callable[[str], "tuple[pd.DataFrame, pd.DataFrame] | None"]


@dataclass
class FlexibilityDeps:
    sessions: sessionmaker
    policy: FlexibilityPolicy
    directory: Directory
    windows: WindowsSource
    scoring: ScoringSource
    notifier: Notifier | None = None
    config: FlexibilityConfig = field(default_factory=FlexibilityConfig)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class SuggestionOut(BaseModel):
    id: str
    suggestion_type: str
    period_start: str
    period_end: str
    from_period: str
    clock_range: str
    to_is_tomorrow: bool
    to_period: str
    to_time: str
    impact_kwh_estimated: float | None
    reward_points: int | None
    confidence: float | None
    community_kwh: float


class RespondIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    response: Literal["accepted", "declined"]
    reward_points: int | None = None
    period_start: Any = None  # lenient: a missing or unparsable period becomes now … now + 1 h
    period_end: Any = None


class RespondOut(BaseModel):
    commitment_id: str | None
    status: Literal["committed", "declined"]
    reward_points_estimated: int


class CommitmentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: str | None = Field(default=None, max_length=255, description="Honoured for service tokens only")
    suggestion_id: str = Field(min_length=1, max_length=255)
    suggestion_type: str = Field(default=SUGGESTION_TYPE, max_length=50)
    community_id: str | None = Field(default=None, max_length=255)
    device_id: str | None = Field(default=None, max_length=255)
    period_start: AwareDatetime
    period_end: AwareDatetime
    reward_points_estimated: int = 0


class SettleIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reward_points_actual: int
    actual_kwh: float | None = None


class CommitmentOut(BaseModel):
    id: uuid.UUID
    user_id: str
    suggestion_id: str
    suggestion_type: str
    community_id: str | None
    device_id: str | None
    period_start: Timestamp
    period_end: Timestamp
    committed_at: Timestamp
    settled_at: Timestamp | None
    reminded_at: Timestamp | None
    status: str
    reward_points_estimated: int
    reward_points_actual: int | None
    actual_kwh: float | None


class CommitmentPage(BaseModel):
    items: list[CommitmentOut]
    total: int


class DailyPoints(BaseModel):
    day: date
    base_points: float
    bonus_points: float
    daily_points: float


class LeaderboardRow(BaseModel):
    season_rank: int
    season_points: float
    is_me: bool
    user_id: str | None = Field(description="Only on the caller's own row")


def _out(row: store.Commitment) -> CommitmentOut:
    return CommitmentOut.model_validate(row, from_attributes=True)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def flexibility_router(deps: FlexibilityDeps) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["flexibility"], responses={
        401: {"description": "Missing, expired or invalid token"},
        403: {"description": "Refused by the access policy (reason in detail)"},
    })
    sessions, tz = deps.sessions, deps.config.local_timezone

    def authorize(request: Request, action: str, owner_id: str | None) -> Principal:
        principal: Principal = request.state.principal
        decision = deps.policy.decide_flexibility(request.state.token_key, principal, action, owner_id)
        if not decision.allow:
            raise HTTPException(403, decision.reason)
        return principal

    def is_service(principal: Principal) -> bool:
        return principal.subject_type == "service"

    def membership(user_id: str) -> Membership | None:
        try:
            return deps.directory.membership(user_id)
        except Exception:  # best effort (§2 step 1, accept step 1)
            log.exception("membership of %s could not be resolved", user_id)
            return None

    # --- suggestions ----------------------------------------------------------------------

    @router.get("/suggestions", response_model=list[SuggestionOut])
    def suggestions(request: Request) -> list[dict]:
        """Windows of today and tomorrow for the caller's community, ranked, at most 8 (§2)."""
        principal = request.state.principal
        authorize(request, "read", principal.sub)
        now = deps.clock()
        try:
            member = deps.directory.membership(principal.sub)
            if member is None:
                return []
            windows = deps.windows(member.community_id, list(suggestion_dates(now, tz)))
            with sessions() as session:
                committed = store.committed_suggestion_ids(session, principal.sub)
            return build_suggestions(windows, device_id=member.device_id, committed=committed, now=now, tz=tz)
        except Exception:  # §2 step 7: any upstream read failure answers []
            log.exception("suggestions of %s unavailable", principal.sub)
            return []

    @router.post("/suggestions/{suggestion_id}/respond", response_model=RespondOut,
                 responses={409: {"description": "The caller's commitment to this suggestion is settled already"}})
    def respond(request: Request, suggestion_id: Annotated[str, Path(max_length=255)], body: RespondIn,
                background: BackgroundTasks) -> dict:
        principal = authorize(request, "write", request.state.principal.sub)
        now = deps.clock()
        start, end = _instant(body.period_start), _instant(body.period_end)
        if start is None or end is None or end <= start:
            start, end = now, now + DEFAULT_PERIOD
        reward = DEFAULT_REWARD if body.reward_points is None else body.reward_points
        if body.response == "declined":
            with sessions.begin() as session:
                store.create_commitment(session, user_id=principal.sub, suggestion_id=suggestion_id,
                                        period_start=start, period_end=end, reward_points_estimated=reward,
                                        status=store.REJECTED, now=now)
            return {"commitment_id": None, "status": "declined", "reward_points_estimated": 0}
        member = membership(principal.sub)
        row, created = store.accept(sessions, user_id=principal.sub, suggestion_id=suggestion_id,
                                    period_start=start, period_end=end, reward_points_estimated=reward,
                                    community_id=member.community_id if member else None,
                                    device_id=member.device_id if member else None, now=now)
        if row.status != store.COMMITTED:  # held as settled: the window is paid, it cannot be taken again
            raise HTTPException(409, f"the commitment {row.id} to this suggestion is {row.status}")
        if created and deps.notifier is not None:
            background.add_task(deps.notifier.on_accept, row, row.device_id, now, deps.config.reminder_lead)
        return {"commitment_id": str(row.id), "status": "committed",
                "reward_points_estimated": row.reward_points_estimated}

    # --- commitments ----------------------------------------------------------------------

    @router.post("/commitments", response_model=CommitmentOut, status_code=201,
                 responses={409: {"description": "The user already holds this suggestion (committed or settled)"}})
    def create(request: Request, body: CommitmentIn) -> CommitmentOut:
        principal: Principal = request.state.principal
        user_id = body.user_id if is_service(principal) else principal.sub
        if not user_id:
            raise HTTPException(422, "user_id is required for a service token")
        authorize(request, "write", user_id)
        if body.period_end <= body.period_start:
            raise HTTPException(422, "period_end must be after period_start")
        row, created = store.accept(sessions, user_id=user_id, suggestion_id=body.suggestion_id,
                                    suggestion_type=body.suggestion_type, community_id=body.community_id,
                                    device_id=body.device_id, period_start=body.period_start,
                                    period_end=body.period_end, reward_points_estimated=body.reward_points_estimated,
                                    now=deps.clock())
        if not created:
            raise HTTPException(409, f"the user holds this suggestion already (commitment {row.id}, {row.status})")
        return _out(row)

    @router.get("/commitments", response_model=CommitmentPage)
    def list_commitments(request: Request, user_id: str | None = None, status: Status | None = None,
                         limit: Annotated[int, Query(ge=1, le=store.MAX_PAGE)] = 50,
                         offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> dict:
        principal: Principal = request.state.principal
        owner = user_id if is_service(principal) else principal.sub
        authorize(request, "read", owner)
        if owner is None:  # a service must name the user
            return {"items": [], "total": 0}
        with sessions() as session:
            rows, total = store.list_commitments(session, user_id=owner, status=status, limit=limit, offset=offset)
            return {"items": [_out(r) for r in rows], "total": total}

    @router.get("/commitments/pending", response_model=list[CommitmentOut])
    def pending(request: Request) -> list[CommitmentOut]:
        """Committed rows in their window, not yet reminded; stamped ``reminded_at`` in the same transaction."""
        authorize(request, "service", None)
        with store.write_transaction(sessions) as session:
            return [_out(r) for r in store.claim_pending(session, deps.clock())]

    @router.get("/commitments/export", response_model=list[CommitmentOut])
    def export(request: Request, created_after: AwareDatetime) -> list[CommitmentOut]:
        authorize(request, "export", None)
        with sessions() as session:
            return [_out(r) for r in store.export(session, created_after)]

    @router.get("/commitments/{commitment_id}", response_model=CommitmentOut,
                responses={404: {"description": "No such commitment of the caller"}})
    def get_commitment(request: Request, commitment_id: uuid.UUID) -> CommitmentOut:
        principal: Principal = request.state.principal
        service = is_service(principal)
        with sessions() as session:
            row = store.get_commitment(session, commitment_id, None if service else principal.sub)
        authorize(request, "read", row.user_id if row is not None and service else principal.sub)
        if row is None:
            raise HTTPException(404, "commitment not found")
        return _out(row)

    @router.delete("/commitments/{commitment_id}", status_code=204, response_class=Response,
                   responses={404: {"description": "No such commitment of the caller"},
                              409: {"description": "The commitment is not committed"}})
    def cancel(request: Request, commitment_id: uuid.UUID) -> Response:
        principal = authorize(request, "delete", request.state.principal.sub)
        with sessions.begin() as session:
            outcome = store.cancel(session, principal.sub, commitment_id, now=deps.clock())
        if not outcome.found:
            raise HTTPException(404, "commitment not found")
        if not outcome.changed:
            raise HTTPException(409, f"commitment is {outcome.row.status}, not committed")
        return Response(status_code=204)

    @router.patch("/commitments/{commitment_id}/settle", response_model=CommitmentOut,
                  responses={404: {"description": "No such commitment"},
                             409: {"description": "The commitment is not committed"}})
    def settle(request: Request, commitment_id: uuid.UUID, body: SettleIn,
               background: BackgroundTasks) -> CommitmentOut:
        authorize(request, "service", None)
        outcome = store.settle_one(sessions, commitment_id, reward_points_actual=body.reward_points_actual,
                                   actual_kwh=body.actual_kwh, now=deps.clock())
        if not outcome.found:
            raise HTTPException(404, "commitment not found")
        if not outcome.changed:
            raise HTTPException(409, f"commitment is {outcome.row.status}, not committed")
        if deps.notifier is not None:
            background.add_task(deps.notifier.settled, [outcome.row])
        return _out(outcome.row)

    # --- gamification ---------------------------------------------------------------------

    def scoring_of(principal: Principal) -> tuple[pd.DataFrame, pd.DataFrame]:
        member = membership(principal.sub)
        scored = deps.scoring(member.community_id) if member is not None else None
        if scored is None:
            return (pd.DataFrame(columns=gamification.DAILY_COLUMNS),
                    pd.DataFrame(columns=gamification.LEADERBOARD_COLUMNS))
        return scored

    @router.get("/gamification", tags=["gamification"])
    def gamification_summary(request: Request) -> dict:
        """Season points (from the scoring assets, never ``reward_points_actual``), level and badges (§7)."""
        principal = authorize(request, "read", request.state.principal.sub)
        daily, board = scoring_of(principal)
        with sessions() as session:
            actions = store.count_commitments(session, principal.sub, store.SETTLED)
            days = store.settled_days(session, principal.sub)
        season = gamification.season_bounds(deps.clock().date(), deps.config.season_months)
        return gamification.summary(principal.sub, board, daily, days, actions, season)

    @router.get("/gamification/history", response_model=list[DailyPoints], tags=["gamification"])
    def gamification_history(request: Request) -> list[dict]:
        principal = authorize(request, "read", request.state.principal.sub)
        daily, _ = scoring_of(principal)
        mine = daily[daily["user_id"] == principal.sub].sort_values("day")
        return mine[["day", "base_points", "bonus_points", "daily_points"]].to_dict("records")

    @router.get("/gamification/leaderboard", response_model=list[LeaderboardRow], tags=["gamification"])
    def gamification_leaderboard(request: Request,
                                 limit: Annotated[int, Query(ge=1, le=store.MAX_PAGE)] = 20) -> list[dict]:
        """The caller's community ranking; other members stay anonymous."""
        principal = authorize(request, "read", request.state.principal.sub)
        _, board = scoring_of(principal)
        top = board.sort_values(["season_rank", "user_id"]).head(limit)
        rows = [{"season_rank": int(r.season_rank), "season_points": float(r.season_points),
                 "is_me": r.user_id == principal.sub, "user_id": r.user_id if r.user_id == principal.sub else None}
                for r in top.itertuples(index=False)]
        return rows

    return router


def build_flexibility_router(settings: Settings, api_config: ApiConfig, engine: Engine,
                             registry: Directory | None = None) -> APIRouter:
    """The router wired to the platform: publications, the demo registry, nudging, MQTT."""
    config = load_flexibility_config(settings=settings)
    sessions = store.flexibility_sessions(engine)
    policy = FlexibilityPolicy(api_config.policy_dir, cache_ttl_s=api_config.decision_cache_ttl_s)
    if not policy.loaded:
        if not api_config.dev:
            raise RuntimeError(f"refusing to serve flexibility without its policy: {policy.load_error}")
        # Development only: the routes stay up and every decision denies (a policy error denies).
        logging.getLogger(__name__).error("no flexibility policy (%s): flexibility routes deny", policy.load_error)
    directory = registry or ParticipantRegistry.demo({config.community_id: config.registry_size}, config.registry_seed)
    notifier = Notifier(sessions, Channels(nudging=NudgingClient.from_env()), mqtt_url=settings.mqtt_url,
                        topic_prefix=config.mqtt_topic_prefix, notify_committed=config.notify_committed)
    root = settings.published_dir
    return flexibility_router(FlexibilityDeps(
        sessions=sessions, policy=policy, directory=directory,
        windows=lambda community, days: publications.read_windows(root, community, days),
        scoring=lambda community: publications.read_scoring(root, community),
        notifier=notifier, config=config))
