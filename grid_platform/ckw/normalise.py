"""Turn CKW payloads into typed rows, and every record that cannot be trusted into a reject.

The raw API keeps German/PascalCase names, numbers as strings (plant feed) and local
offsets; rows here carry typed numbers and timezone-aware UTC timestamps (ckw.md §7).
A bad record never stops the good ones: it becomes a :class:`Reject` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

TARIFF_TYPES = ("grid", "electricity", "integrated", "grid_usage")
TARIFF_NAMES = ("home_dynamic", "business_dynamic")
PLANT_ID = "lutersarni"
_SIX_DP = Decimal("0.000001")


@dataclass(frozen=True)
class Reject:
    endpoint: str
    reason: str
    record: Any

    def as_row(self, run_id: str, rejected_at: datetime) -> dict[str, Any]:
        text = json.dumps(self.record, sort_keys=True, default=str, ensure_ascii=False)
        digest = hashlib.sha256(f"{self.reason}\n{text}".encode()).hexdigest()[:32]
        return {"run_id": run_id, "endpoint": self.endpoint, "record_hash": digest,
                "rejected_at": rejected_at.isoformat(), "reason": self.reason, "record": text[:4000]}


class BadRecord(ValueError):
    """A record violates the contract; the message is the reject reason."""


def parse_timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise BadRecord(f"{field}: expected an ISO 8601 string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRecord(f"{field}: not an ISO 8601 timestamp: {value!r}") from None
    if ts.tzinfo is None:
        # Never assume a zone (ckw.md §1).
        raise BadRecord(f"{field}: timestamp without offset: {value!r}")
    return ts.astimezone(UTC)


def _number(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRecord(f"{field}: expected a JSON number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise BadRecord(f"{field}: not a finite number")
    return Decimal(str(value)).quantize(_SIX_DP)


def _numeric_string(value: Any, field: str) -> float | None:
    """The plant feed sends numbers as strings; an absent value is null, garbage is a reject."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRecord(f"{field}: expected a numeric string, got bool")
    try:
        number = float(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError):
        raise BadRecord(f"{field}: not a number: {value!r}") from None
    if not math.isfinite(number):
        raise BadRecord(f"{field}: not a finite number")
    return number


def normalise_prices(payload: Any, *, endpoint: str, tariff_name: str, tariff_types: tuple[str, ...] = TARIFF_TYPES,
                     ingested_at: datetime) -> tuple[list[dict], list[Reject]]:
    """Rows of ``ckw_prices`` (one per slot and tariff type) and the rejects."""
    if not isinstance(payload, dict) or not isinstance(payload.get("prices"), list):
        return [], [Reject(endpoint, "schema drift: body has no 'prices' array", _excerpt(payload))]
    rejects: list[Reject] = []
    publication_ts = None
    if payload.get("publication_timestamp") is not None:
        try:
            publication_ts = parse_timestamp(payload["publication_timestamp"], "publication_timestamp")
        except BadRecord as exc:
            rejects.append(Reject(endpoint, str(exc), {"publication_timestamp": payload["publication_timestamp"]}))
    rows: list[dict] = []
    for slot in payload["prices"]:
        try:
            if not isinstance(slot, dict):
                raise BadRecord(f"slot: expected an object, got {type(slot).__name__}")
            start = parse_timestamp(slot.get("start_timestamp"), "start_timestamp")
            end = parse_timestamp(slot.get("end_timestamp"), "end_timestamp")
            if end <= start:
                raise BadRecord("end_timestamp is not after start_timestamp")
            slot_rows = []
            for tariff_type in tariff_types:
                component = slot.get(tariff_type)
                if not isinstance(component, list) or not component or not isinstance(component[0], dict):
                    raise BadRecord(f"{tariff_type}: expected a one-element array of {{unit, value}}")
                item = component[0]
                unit = item.get("unit")
                if not isinstance(unit, str) or not unit:
                    raise BadRecord(f"{tariff_type}.unit: missing")
                slot_rows.append({
                    "slot_start": start, "slot_end": end, "tariff_name": tariff_name,
                    "tariff_type": tariff_type, "unit": unit,
                    "value": _number(item.get("value"), f"{tariff_type}.value"),
                    "publication_ts": publication_ts, "ingested_at": ingested_at,
                })
        except BadRecord as exc:
            rejects.append(Reject(endpoint, str(exc), slot))
            continue
        rows.extend(slot_rows)
    return rows, rejects


def normalise_tra(payload: Any, *, endpoint: str, ingested_at: datetime) -> tuple[list[dict], list[Reject]]:
    """Rows of ``ckw_tra_signals`` keyed by (signal_name, signal_date, start_ts)."""
    if not isinstance(payload, list):
        return [], [Reject(endpoint, "schema drift: body is not an array of signals", _excerpt(payload))]
    rows, rejects = [], []
    for item in payload:
        try:
            if not isinstance(item, dict):
                raise BadRecord(f"signal: expected an object, got {type(item).__name__}")
            name = item.get("Name")
            if not isinstance(name, str) or not name:
                raise BadRecord("Name: missing")
            raw_date = item.get("Date")
            try:
                signal_date = date.fromisoformat(raw_date) if isinstance(raw_date, str) else None
            except ValueError:
                signal_date = None
            if signal_date is None:
                raise BadRecord(f"Date: not a YYYY-MM-DD date: {raw_date!r}")
            start = parse_timestamp(item.get("Start"), "Start")
            end = parse_timestamp(item.get("End"), "End")
            description = item.get("Description")
            rows.append({
                "signal_name": name, "description": description if isinstance(description, str) else None,
                "signal_date": signal_date, "start_ts": start, "end_ts": end, "ingested_at": ingested_at,
            })
        except BadRecord as exc:
            rejects.append(Reject(endpoint, str(exc), item))
    return rows, rejects


PLANT_FIELDS = {
    "spannung": "voltage_kv",
    "wirkleistung": "active_power_mw",
    "blindleistung": "reactive_power_mvar",
    "windgeschwindigkeit": "wind_speed_kmh",
}


def normalise_plant(payload: Any, *, endpoint: str, ingested_at: datetime) -> tuple[list[dict], list[Reject]]:
    """One ``ckw_plant_status`` row keyed by (plant_id, reading_ts), the raw payload kept."""
    try:
        if not isinstance(payload, dict):
            raise BadRecord(f"schema drift: expected an object, got {type(payload).__name__}")
        row = {
            "plant_id": PLANT_ID,
            "reading_ts": parse_timestamp(payload.get("zeitstempel"), "zeitstempel"),
            # Any status other than "in Betrieb" is stored verbatim (ckw.md §5).
            "operational_status": payload.get("betriebsstatus") if isinstance(payload.get("betriebsstatus"), str) else None,
            "raw_payload": json.dumps(payload, ensure_ascii=False, sort_keys=True),
            "ingested_at": ingested_at,
        }
        for source, column in PLANT_FIELDS.items():
            row[column] = _numeric_string(payload.get(source), source)
    except BadRecord as exc:
        return [], [Reject(endpoint, str(exc), _excerpt(payload))]
    return [row], []


def _excerpt(payload: Any) -> Any:
    text = json.dumps(payload, default=str, ensure_ascii=False)
    return payload if len(text) <= 2000 else text[:2000]
