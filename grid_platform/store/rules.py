"""Alert rules and notification settings (alerts-and-access.md §1–2).

Confidentiality rests on ``user_id``: every read and write of a rule filters on the
caller's ``sub``, so another user's rule is indistinguishable from a missing one. Callers
own the transaction (``with session.begin(): …``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from grid_platform.store.models import RISK_TYPES, THRESHOLDS, AlertRule, NotificationSettings, utcnow

RULE_FIELDS = ("risk_types", "threshold", "recipients", "active")
SETTINGS_FIELDS = ("email_recipients", "webhook_url")


def normalize_risk_types(risk_types: Iterable[str]) -> list[str]:
    """Non-empty, known values, duplicates removed in order."""
    values = list(dict.fromkeys(risk_types))
    if not values or any(v not in RISK_TYPES for v in values):
        raise ValueError(f"risk_types must be a non-empty list of {RISK_TYPES}, got {values}")
    return values


def _check_threshold(threshold: str) -> str:
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    return threshold


def list_rules(session: Session, user_id: str) -> list[AlertRule]:
    query = select(AlertRule).where(AlertRule.user_id == user_id).order_by(AlertRule.created_at, AlertRule.id)
    return list(session.scalars(query))


def get_rule(session: Session, user_id: str, rule_id: uuid.UUID) -> AlertRule | None:
    """The caller's rule, or None when it does not exist or belongs to someone else."""
    query = select(AlertRule).where(AlertRule.id == rule_id, AlertRule.user_id == user_id)
    return session.scalars(query).one_or_none()


def create_rule(session: Session, *, user_id: str, network_id: str, risk_types: Iterable[str],
                threshold: str, recipients: str | None = None, active: bool = True) -> AlertRule:
    if not network_id:
        raise ValueError("an alert rule needs a network_id")
    now = utcnow()
    rule = AlertRule(id=uuid.uuid4(), user_id=user_id, network_id=network_id,
                     risk_types=normalize_risk_types(risk_types), threshold=_check_threshold(threshold),
                     recipients=recipients, active=active, created_at=now, updated_at=now)
    session.add(rule)
    session.flush()
    return rule


def update_rule(session: Session, rule: AlertRule, changes: Mapping[str, Any]) -> AlertRule:
    """Apply only the given fields (a single toggle is a valid update)."""
    unknown = set(changes) - set(RULE_FIELDS)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if "risk_types" in changes:
        rule.risk_types = normalize_risk_types(changes["risk_types"])
    if "threshold" in changes:
        rule.threshold = _check_threshold(changes["threshold"])
    if "recipients" in changes:
        rule.recipients = changes["recipients"]
    if "active" in changes:
        rule.active = bool(changes["active"])
    rule.updated_at = utcnow()
    session.flush()
    return rule


def delete_rule(session: Session, rule: AlertRule) -> None:
    session.delete(rule)
    session.flush()


def deactivate_rules_outside(session: Session, user_id: str, networks: Iterable[str]) -> int:
    """Deactivate the user's active rules on networks the user no longer holds (§7)."""
    held = list(networks)
    query = (update(AlertRule)
             .where(AlertRule.user_id == user_id, AlertRule.active.is_(True), AlertRule.network_id.not_in(held))
             .values(active=False, updated_at=utcnow()))
    return session.execute(query).rowcount or 0


def active_rules(session: Session, network_id: str | None = None) -> list[AlertRule]:
    """Active rules (of one network), in creation order: what alert dispatch reads."""
    query = select(AlertRule).where(AlertRule.active.is_(True))
    if network_id is not None:
        query = query.where(AlertRule.network_id == network_id)
    return list(session.scalars(query.order_by(AlertRule.network_id, AlertRule.created_at, AlertRule.id)))


def get_settings(session: Session, user_id: str) -> NotificationSettings:
    """The user's settings row, created empty on first access.

    Creation is an INSERT … ON CONFLICT DO NOTHING, so two first requests racing on the
    unique ``user_id`` both succeed (upstream's create-on-GET failed one of them).
    """
    dialect = session.get_bind().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise RuntimeError(f"state database dialect {dialect!r} is not supported (SQLite or PostgreSQL)")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    session.execute(insert(NotificationSettings)
                    .values(id=uuid.uuid4(), user_id=user_id, created_at=now, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["user_id"]))
    return session.scalars(select(NotificationSettings).where(NotificationSettings.user_id == user_id)).one()


def update_settings(session: Session, user_id: str, changes: Mapping[str, Any]) -> NotificationSettings:
    """Merge the given fields into the user's row (created if missing)."""
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    row = get_settings(session, user_id)
    for name, value in changes.items():
        setattr(row, name, value)
    if changes:
        row.updated_at = utcnow()
    session.flush()
    return row
