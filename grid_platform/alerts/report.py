"""The ``grid_risk_report`` of alert dispatch (alerts-and-access.md §3–§4): pure functions.

Input: ``risk_km`` rows (RiskKmRow, grid-api.md §3.6; any mapping with ``date, risk_vector,
level, operational_unit, line_name, km_total, km_alert, km_warning, worst_level``; rows of
another ``level`` than ``tratta`` are ignored), the network's active alert rules (objects
with ``id, user_id, risk_types, threshold, recipients``, e.g. ``store.models.AlertRule``) and
each owner's ``email_recipients`` text.

* ``triggered_hazards(rule, rows)``: the rule's hazards (rule order) with some row at or
  above its threshold.
* ``recipient_groups(rules, rows, email_settings)``: triggered rules merged per recipient
  key (§3 fallback: rule recipients, else the owner's settings, else the owner's ``sub``).
* ``owner_groups(rules, rows, owners)``: the same merge per rule owner (webhooks).
* ``report_facts(group, rows, ...)``: the facts of one report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from grid_platform.store.recipients import parse_recipients, synthetic_user_id

FACTS_VERSION = "1.0"
SCENARIO = "grid_risk_report"
ALERT, WARNING, NORMAL = "ALERT", "WARNING", "NORMAL"
LEVEL_RANK = {NORMAL: 0, WARNING: 1, ALERT: 2}
WARNING_WEIGHT = 0.5
MAX_TOP_LINES = 15
MAX_WORST_LINES = 3
KM_DECIMALS, PCT_DECIMALS = 2, 1


class RuleLike(Protocol):
    id: Any
    user_id: str
    risk_types: list[str]
    threshold: str
    recipients: str | None


@dataclass(frozen=True)
class KmRow:
    """The columns of a tratta ``risk_km`` row the report uses, normalised."""

    date: str
    risk_vector: str
    operational_unit: str | None
    line_name: str | None
    km_total: float
    km_alert: float
    km_warning: float
    worst_level: str


def km(value: Any) -> float:
    """A km figure; null, non-numeric, NaN or infinite -> 0."""
    if value is None or isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float | Decimal):
        number = float(value)
    else:
        try:
            number = float(str(value))
        except ValueError:
            return 0.0
    return number if math.isfinite(number) else 0.0


def iso_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def km_rows(rows: Iterable[Mapping[str, Any]], dates: Sequence[str] | None = None) -> list[KmRow]:
    """Tratta rows (a row without ``level`` counts as tratta), restricted to ``dates`` when given."""
    wanted = set(dates) if dates is not None else None
    out = []
    for row in rows:
        if row.get("level") not in (None, "tratta"):
            continue
        day = iso_date(row.get("date"))
        if wanted is not None and day not in wanted:
            continue
        level = row.get("worst_level")
        out.append(KmRow(date=day, risk_vector=str(row.get("risk_vector")),
                         operational_unit=_text(row.get("operational_unit")), line_name=_text(row.get("line_name")),
                         km_total=km(row.get("km_total")), km_alert=km(row.get("km_alert")),
                         km_warning=km(row.get("km_warning")),
                         worst_level=level if level in LEVEL_RANK else NORMAL))
    return out


def km_at_or_above(km_alert: float, km_warning: float, threshold: str) -> float:
    """km at or above ``threshold``; an unknown threshold counts as ALERT (the floor)."""
    return km_alert + km_warning if threshold == WARNING else km_alert


def triggered_hazards(rule: RuleLike, rows: Sequence[KmRow]) -> list[str]:
    return [v for v in dict.fromkeys(rule.risk_types)
            if any(r.risk_vector == v and km_at_or_above(r.km_alert, r.km_warning, rule.threshold) > 0 for r in rows)]


def resolve_recipients(rule: RuleLike, settings_recipients: str | None) -> tuple[str, list[str]]:
    """(recipient key, addresses): rule list, else owner's settings, else the owner's ``sub`` with []."""
    for text in (rule.recipients, settings_recipients):
        addresses = parse_recipients(text)
        if addresses:
            return synthetic_user_id(addresses), addresses
    return rule.user_id, []


@dataclass
class Group:
    """Triggered rules merged under one key: one report each."""

    key: str
    email_recipients: list[str]
    threshold: str = ALERT
    hazards: list[str] = field(default_factory=list)
    rule_ids: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)


def _merge(rules: Iterable[RuleLike], rows: Sequence[KmRow],
           key_of: Callable[[RuleLike], tuple[str, list[str]] | None]) -> list[Group]:
    """Merge triggered rules by ``key_of(rule)`` (None: rule left out); groups in first-rule order.

    Hazards are united; the group threshold is WARNING when any merged rule is WARNING
    (the lower threshold wins).
    """
    groups: dict[str, Group] = {}
    for rule in rules:
        hazards = triggered_hazards(rule, rows)
        resolved = key_of(rule) if hazards else None
        if resolved is None:
            continue
        key, addresses = resolved
        group = groups.setdefault(key, Group(key=key, email_recipients=addresses))
        group.hazards = sorted(set(group.hazards) | set(hazards))
        if rule.threshold == WARNING:
            group.threshold = WARNING
        group.rule_ids.append(str(rule.id))
        if rule.user_id not in group.owners:
            group.owners.append(rule.user_id)
    return list(groups.values())


def recipient_groups(rules: Iterable[RuleLike], rows: Sequence[KmRow],
                     email_settings: Mapping[str, str | None]) -> list[Group]:
    """One group per recipient key (§3); ``email_settings`` maps owner sub -> settings text."""
    return _merge(rules, rows, lambda rule: resolve_recipients(rule, email_settings.get(rule.user_id)))


def owner_groups(rules: Iterable[RuleLike], rows: Sequence[KmRow], owners: Iterable[str]) -> list[Group]:
    """One group per rule owner among ``owners`` (e.g. those with a webhook URL)."""
    wanted = set(owners)
    return _merge(rules, rows, lambda rule: (rule.user_id, []) if rule.user_id in wanted else None)


class _Sums:
    def __init__(self) -> None:
        self.n = 0
        self.total: list[float] = []
        self.alert: list[float] = []
        self.warning: list[float] = []
        self.rank = 0

    def add(self, row: KmRow) -> None:
        self.n += 1
        self.total.append(row.km_total)
        self.alert.append(row.km_alert)
        self.warning.append(row.km_warning)
        self.rank = max(self.rank, LEVEL_RANK[row.worst_level])

    def figures(self) -> dict[str, Any]:
        total, alert, warning = math.fsum(self.total), math.fsum(self.alert), math.fsum(self.warning)

        def pct(part: float) -> float | None:
            return round(100.0 * part / total, PCT_DECIMALS) if total else None

        return {"km_total": round(total, KM_DECIMALS), "km_alert": round(alert, KM_DECIMALS),
                "km_warning": round(warning, KM_DECIMALS), "pct_alert": pct(alert), "pct_warning": pct(warning),
                "risk_index": pct(alert + WARNING_WEIGHT * warning),
                "worst_level": next(k for k, v in LEVEL_RANK.items() if v == self.rank)}

    def at_or_above(self, threshold: str) -> bool:
        return km_at_or_above(math.fsum(self.alert), math.fsum(self.warning), threshold) > 0


def _by_index(name: str | None, figures: Mapping[str, Any], *, km_alert_first: bool = False) -> tuple:
    """risk_index desc (null last), [km_alert desc,] then the name."""
    index = figures["risk_index"]
    return (index is None, -(index or 0.0), -figures["km_alert"] if km_alert_first else 0.0, name or "")


def vector_report(rows: Sequence[KmRow], risk_vector: str, threshold: str) -> dict[str, Any]:
    """``{risk_vector, units, top_lines, totals}`` of one date's rows of one hazard."""
    totals, units, lines = _Sums(), {}, {}
    unit_lines: dict[str | None, dict[str | None, _Sums]] = {}
    line_units: dict[str | None, set[str]] = {}
    for row in rows:
        totals.add(row)
        units.setdefault(row.operational_unit, _Sums()).add(row)
        lines.setdefault(row.line_name, _Sums()).add(row)
        unit_lines.setdefault(row.operational_unit, {}).setdefault(row.line_name, _Sums()).add(row)
        if row.operational_unit is not None:
            line_units.setdefault(row.line_name, set()).add(row.operational_unit)

    unit_items = []
    for unit, sums in units.items():
        figures = sums.figures()
        at_risk = [(name, s.figures()) for name, s in unit_lines[unit].items() if s.at_or_above(WARNING)]
        at_risk.sort(key=lambda item: _by_index(item[0], item[1], km_alert_first=True))
        unit_items.append({"operational_unit": unit, "n_tratte": sums.n, **_pick(figures, pct_warning=True),
                           "worst_lines": [name for name, _ in at_risk[:MAX_WORST_LINES]]})
    unit_items.sort(key=lambda u: _by_index(u["operational_unit"], u))

    line_items = []
    for name, sums in lines.items():
        if sums.at_or_above(threshold):
            line_items.append({"line_name": name, "operational_units": sorted(line_units.get(name, ())),
                               **_pick(sums.figures(), pct_warning=False)})
    line_items.sort(key=lambda line: _by_index(line["line_name"], line))

    return {"risk_vector": risk_vector, "units": unit_items, "top_lines": line_items[:MAX_TOP_LINES],
            "totals": {"n_tratte": totals.n, **_pick(totals.figures(), pct_warning=True)}}


def _pick(figures: Mapping[str, Any], *, pct_warning: bool) -> dict[str, Any]:
    names = ["km_total", "km_alert", "km_warning", "pct_alert", *(["pct_warning"] if pct_warning else []),
             "risk_index", "worst_level"]
    return {n: figures[n] for n in names}


def days_report(rows: Sequence[KmRow], dates: Sequence[str], hazards: Sequence[str], threshold: str
                ) -> list[dict[str, Any]]:
    """For each date, each hazard (sorted): present even without rows (empty lists, zero totals)."""
    by_key: dict[tuple[str, str], list[KmRow]] = {}
    for row in rows:
        by_key.setdefault((row.date, row.risk_vector), []).append(row)
    return [{"date": day, "vectors": [vector_report(by_key.get((day, v), []), v, threshold) for v in sorted(hazards)]}
            for day in dates]


def utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def report_facts(group: Group, rows: Sequence[KmRow], *, network_id: str, dates: Sequence[str], period: str,
                 generated_at: datetime, app_url: str) -> dict[str, Any]:
    hazards = sorted(group.hazards)
    return {
        "facts_version": FACTS_VERSION,
        "scenario": SCENARIO,
        "period": period,
        "dates": list(dates),
        "network_id": network_id,
        "threshold": group.threshold,
        "risk_types": hazards,
        "generated_at": utc_iso(generated_at),
        "app_url": app_url,
        "email_recipients": list(group.email_recipients),
        "days": days_report(rows, dates, hazards, group.threshold),
    }
