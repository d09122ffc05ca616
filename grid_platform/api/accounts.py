"""``/api/me``, alert rules and notification settings (grid-api.md §2, alerts-and-access.md §1–3, §6).

Rules and settings belong to the token's ``sub``: a rule of another user answers 404 like a
missing one. Writes need exactly one DSO network (the policy's ``claims.network_id``);
``network_id`` and ``user_id`` never come from the body.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_validator
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from grid_platform.api.identity import Principal, TTLCache, locale_for
from grid_platform.api.policy import PolicyEngine, claimed_network
from grid_platform.store import rules as store
from grid_platform.store.recipients import invalid_recipients

log = logging.getLogger(__name__)

MISSING_DSO = "missing DSO organization membership"
AMBIGUOUS_DSO = "ambiguous DSO organization membership: name the network"
WEBHOOK_MAX_LENGTH = 2048

Timestamp = Annotated[datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time"})]
RiskType = Literal["wind", "heat"]
Threshold = Literal["ALERT", "WARNING"]


def _check_recipients(value: str | None) -> str | None:
    if value is None:
        return None
    bad = invalid_recipients(value)
    if bad:
        raise ValueError(f"invalid recipient addresses: {', '.join(bad)}")
    return value.strip() or None


class Me(BaseModel):
    sub: str
    email: str | None
    name: str | None
    preferred_username: str | None
    locale: str | None
    network_id: str
    organization: str


class MeResponse(BaseModel):
    user: Me


class AlertRuleCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")  # user_id / network_id in a body are ignored

    risk_types: list[RiskType] = Field(min_length=1)
    threshold: Threshold
    recipients: str | None = Field(default=None, max_length=4000,
                                   description="E-mail list (split on , ; or blanks) overriding the settings")
    active: bool = True

    _recipients = field_validator("recipients")(_check_recipients)


class AlertRuleUpdate(BaseModel):
    """Only the fields present are applied; an explicit null threshold/risk_types/active is invalid."""

    model_config = ConfigDict(extra="ignore")

    risk_types: list[RiskType] = Field(default=None, min_length=1)  # type: ignore[assignment]
    threshold: Threshold = None  # type: ignore[assignment]
    recipients: str | None = Field(default=None, max_length=4000)
    active: bool = None  # type: ignore[assignment]

    _recipients = field_validator("recipients")(_check_recipients)


class AlertRule(BaseModel):
    id: uuid.UUID
    user_id: str
    network_id: str
    risk_types: list[RiskType]
    threshold: Threshold
    recipients: str | None
    active: bool
    created_at: Timestamp
    updated_at: Timestamp


class NotificationSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email_recipients: str | None = Field(default=None, max_length=4000)
    webhook_url: str | None = Field(default=None, max_length=WEBHOOK_MAX_LENGTH,
                                     description="Absolute https:// URL (stored, not used by dispatch)")

    _recipients = field_validator("email_recipients")(_check_recipients)

    @field_validator("webhook_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class NotificationSettings(BaseModel):
    user_id: str
    email_recipients: str | None
    webhook_url: str | None
    updated_at: Timestamp


def webhook_problem(url: str, *, allow_local: bool) -> str | None:
    """Why ``url`` cannot be a webhook, or None.

    Absolute ``https://`` only; the host must not resolve to a private, loopback,
    link-local or otherwise non-global address unless ``GRID_ALLOW_LOCAL_WEBHOOKS=1``.
    """
    if len(url) > WEBHOOK_MAX_LENGTH:
        return f"webhook_url is longer than {WEBHOOK_MAX_LENGTH} characters"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "webhook_url contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        return f"webhook_url is not a valid URL: {exc}"
    if parts.scheme != "https" or not parts.hostname:
        return "webhook_url must be an absolute https:// URL"
    if allow_local:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return f"webhook_url host {parts.hostname!r} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global:
            return f"webhook_url host {parts.hostname!r} resolves to a non-public address ({address})"
    return None


def _validation_error(field: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": message, "input": value}])


def _rule_out(rule: Any) -> AlertRule:
    return AlertRule.model_validate(rule, from_attributes=True)


def _settings_out(row: Any) -> NotificationSettings:
    return NotificationSettings.model_validate(row, from_attributes=True)


def accounts_router(policy: PolicyEngine, sessions: sessionmaker, *, allow_local_webhooks: bool) -> APIRouter:
    router = APIRouter(prefix="/api", responses={
        401: {"description": "Missing, expired or invalid token"},
        403: {"description": "Refused by the access policy (reason in detail)"},
    })
    seen_tokens: TTLCache[bool] = TTLCache(maxsize=10000, ttl_s=3600)

    def authorize(request: Request, action: str) -> Principal:
        principal: Principal = request.state.principal
        decision = policy.decide(request.state.token_key, principal, action, resource_type="alerts")
        if not decision.allow:
            raise HTTPException(status_code=403, detail=decision.reason)
        return principal

    def single_network(principal: Principal) -> str:
        network = claimed_network(principal, None)
        if network is None:
            raise HTTPException(403, AMBIGUOUS_DSO if len(principal.dso_networks) > 1 else MISSING_DSO)
        return network

    @router.get("/me", response_model=MeResponse, tags=["identity"])
    def me(request: Request) -> dict:
        principal: Principal = request.state.principal
        if principal.subject_type == "user" and seen_tokens.get(request.state.token_key) is None:
            # A user seen without a network stops receiving its alerts (§7), once per token.
            try:
                with sessions.begin() as session:
                    stopped = store.deactivate_rules_outside(session, principal.sub, principal.dso_networks)
                if stopped:
                    log.info("deactivated %d alert rule(s) of %s on networks no longer held", stopped, principal.sub)
                seen_tokens.put(request.state.token_key, True)
            except SQLAlchemyError:
                log.exception("could not deactivate stale alert rules of %s", principal.sub)
        network = single_network(principal)
        return {"user": {
            "sub": principal.sub,
            "email": principal.claim("email"),
            "name": principal.claim("name"),
            "preferred_username": principal.claim("preferred_username"),
            "locale": locale_for(principal, request.headers.get("accept-language")),
            "network_id": network,
            "organization": network,
        }}

    @router.get("/alert-rules", response_model=list[AlertRule], tags=["alerts"])
    def list_rules(request: Request) -> list[AlertRule]:
        principal = authorize(request, "alerts.read")
        if principal.subject_type == "user" and not principal.dso_networks:
            return []
        with sessions.begin() as session:
            return [_rule_out(r) for r in store.list_rules(session, principal.sub)]

    @router.post("/alert-rules", response_model=AlertRule, status_code=201, tags=["alerts"])
    def create_rule(request: Request, body: AlertRuleCreate) -> AlertRule:
        principal = authorize(request, "alerts.write")
        network = single_network(principal)
        with sessions.begin() as session:
            rule = store.create_rule(session, user_id=principal.sub, network_id=network,
                                     risk_types=body.risk_types, threshold=body.threshold,
                                     recipients=body.recipients, active=body.active)
            return _rule_out(rule)

    @router.patch("/alert-rules/{rule_id}", response_model=AlertRule, tags=["alerts"],
                  responses={404: {"description": "No such rule of the caller"}})
    def update_rule(request: Request, rule_id: uuid.UUID, body: AlertRuleUpdate) -> AlertRule:
        principal = authorize(request, "alerts.write")
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        with sessions.begin() as session:
            rule = store.get_rule(session, principal.sub, rule_id)
            if rule is None:
                raise HTTPException(404, "alert rule not found")
            return _rule_out(store.update_rule(session, rule, changes))

    @router.delete("/alert-rules/{rule_id}", status_code=204, response_class=Response, tags=["alerts"],
                   responses={404: {"description": "No such rule of the caller"}})
    def delete_rule(request: Request, rule_id: uuid.UUID) -> Response:
        principal = authorize(request, "alerts.write")
        with sessions.begin() as session:
            rule = store.get_rule(session, principal.sub, rule_id)
            if rule is None:
                raise HTTPException(404, "alert rule not found")
            store.delete_rule(session, rule)
        return Response(status_code=204)

    @router.get("/notification-settings", response_model=NotificationSettings, tags=["alerts"])
    def get_settings(request: Request) -> NotificationSettings:
        principal = authorize(request, "alerts.read")
        with sessions.begin() as session:
            return _settings_out(store.get_settings(session, principal.sub))

    @router.put("/notification-settings", response_model=NotificationSettings, tags=["alerts"])
    def put_settings(request: Request, body: NotificationSettingsUpdate) -> NotificationSettings:
        principal = authorize(request, "alerts.write")
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        if changes.get("webhook_url"):
            problem = webhook_problem(changes["webhook_url"], allow_local=allow_local_webhooks)
            if problem:
                raise _validation_error("webhook_url", problem, changes["webhook_url"])
        with sessions.begin() as session:
            return _settings_out(store.update_settings(session, principal.sub, changes))

    return router
