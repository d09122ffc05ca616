"""Settlement of commitments against measured consumption (flexibility.md §4.1).

* ``settlement_date``: the UTC day a run settles (run date − 1; unreadable -> yesterday).
* ``settle_points``: pure and vectorised (numpy ``searchsorted`` over readings sorted by
  device and time, integer prefix sums): per commitment the readings with
  ``ts ∈ [period_start, period_end)``, ``actual_kwh`` and ``reward_points_actual``.
* ``points_for_readings``: the same rule for one commitment, the per-row reference.
* ``settle_day``: selection, points and the ledger write (``store.flexibility``), one commit
  per batch; exactly once whatever reruns, crashes or overlapping runs happen.

Points are ``round(Σ consumption_kwh × 10)`` with Python's half-to-even rounding (Σ 0.25 -> 2,
Σ 0.35 -> 4, Σ 1.25 -> 12). Sums are exact: each reading is first taken to integer µkWh, so a
binary-float artefact (0.1 + 0.15 = 0.25000000000000003) never flips a half. A non-numeric
reading counts as 0; a commitment without any reading is left ``committed`` for a later run.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import sessionmaker

from grid_platform.store import flexibility as store

log = logging.getLogger(__name__)

MICRO = 1_000_000  # readings are summed as integer µkWh
POINTS_PER_KWH = 10
MAX_READINGS = 24  # hourly rows of one UTC day at most
RESULT_COLUMNS = ["commitment_id", "n_readings", "actual_kwh", "reward_points_actual"]


def settlement_date(run_date: Any, today: date | None = None) -> date:
    """The UTC day to settle: the run date − 1; an unreadable run date means yesterday."""
    today = today or datetime.now(UTC).date()
    try:
        if isinstance(run_date, datetime):
            day = run_date.astimezone(UTC).date() if run_date.tzinfo else run_date.date()
        elif isinstance(run_date, date):
            day = run_date
        else:
            day = date.fromisoformat(str(run_date)[:10])
    except (TypeError, ValueError):
        day = today
    return day - timedelta(days=1)


def _micro(values: Any) -> np.ndarray:
    """Readings as integer µkWh; non-numeric and non-finite readings are 0."""
    numbers = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(dtype="float64")
    numbers[~np.isfinite(numbers)] = 0.0
    return np.rint(numbers * MICRO).astype(np.int64)


def _points(total_micro: np.ndarray) -> np.ndarray:
    """round(Σ kWh × 10), half to even, from exact integer µkWh sums."""
    quotient, remainder = np.divmod(total_micro * POINTS_PER_KWH, MICRO)
    half = MICRO // 2
    up = (remainder > half) | ((remainder == half) & (quotient % 2 == 1))
    return quotient + up


def points_for_readings(readings: Iterable[Any]) -> tuple[int, float] | None:
    """(reward_points_actual, actual_kwh) of one commitment's readings; None without readings."""
    values = list(readings)[:MAX_READINGS]
    if not values:
        return None
    total = 0
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = 0.0
        total += round(number * MICRO) if math.isfinite(number) else 0
    return int(_points(np.array([total], dtype=np.int64))[0]), total / MICRO


def _utc_seconds(values: Any, *, ceil: bool = False) -> np.ndarray:
    """Epoch seconds of UTC times (naive values are UTC, as in the gold tables)."""
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        index = index.tz_localize("UTC")
    ns = index.as_unit("ns").asi8
    return -(-ns // 10**9) if ceil else ns // 10**9


def settle_points(commitments: pd.DataFrame, readings: pd.DataFrame) -> pd.DataFrame:
    """Points of each commitment that has at least one reading.

    ``commitments``: ``commitment_id, device_id, period_start, period_end``; ``readings``:
    hourly ``ts, device_id, consumption_kwh`` (a duplicate (device, ts) keeps the last row).
    Returns ``commitment_id, n_readings, actual_kwh, reward_points_actual``.
    """
    if commitments.empty or readings.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            RESULT_COLUMNS, ("object", "int64", "float64", "int64"))})
    device_code, devices = pd.factorize(readings["device_id"].astype(str).to_numpy(), sort=True)
    ts, micro = _utc_seconds(readings["ts"]), _micro(readings["consumption_kwh"].to_numpy())
    # Rows by device, time and input position; of a repeated (device, ts) the last row counts.
    order = np.lexsort((np.arange(len(ts)), ts, device_code))
    device_code, ts, micro = device_code[order].astype(np.int64), ts[order], micro[order]
    last = np.append((device_code[1:] != device_code[:-1]) | (ts[1:] != ts[:-1]), True)
    device_code, ts, micro = device_code[last], ts[last], micro[last]
    prefix = np.concatenate([[0], np.cumsum(micro)])
    # Rows sorted by (device code, ts) packed into one increasing key: code * span + offset.
    base = int(ts.min())
    span = int(ts.max()) - base + 2
    packed = device_code * span + (ts - base)

    code = pd.Index(devices).get_indexer(commitments["device_id"].astype(str).to_numpy())

    def first_at_or_after(bound: np.ndarray) -> np.ndarray:
        # Clipping keeps a bound before/after the device's readings inside the device's block.
        return np.searchsorted(packed, code * span + np.clip(bound - base, 0, span - 1), side="left")

    lo = first_at_or_after(_utc_seconds(commitments["period_start"], ceil=True))
    hi = first_at_or_after(_utc_seconds(commitments["period_end"], ceil=True))
    n = np.where(code >= 0, np.clip(hi - lo, 0, MAX_READINGS), 0)
    totals = prefix[lo + n] - prefix[lo]
    has = n > 0
    return pd.DataFrame({
        "commitment_id": commitments["commitment_id"].to_numpy()[has],
        "n_readings": n[has].astype(np.int64),
        "actual_kwh": totals[has] / MICRO,
        "reward_points_actual": _points(totals[has]).astype(np.int64),
    }).reset_index(drop=True)


@dataclass
class SettlementReport:
    day: date
    selected: int = 0
    skipped_unassigned: int = 0  # no community or no device: stay committed
    missing_readings: int = 0  # no reading yet: a later run retries
    settled_ids: list[Any] = field(default_factory=list)  # as stored (store.due_for_settlement)
    already_settled: int = 0  # claimed by another run or cancelled meanwhile
    batches: int = 0

    @property
    def settled(self) -> list[uuid.UUID]:
        """The commitments this run settled, as UUIDs (built on demand: the run itself needs none)."""
        return [store.as_uuid(cid) for cid in self.settled_ids]

    def as_metadata(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "selected": self.selected, "skipped_unassigned": self.skipped_unassigned,
                "missing_readings": self.missing_readings, "settled": len(self.settled_ids),
                "already_settled": self.already_settled, "batches": self.batches}


def due_frame(sessions: sessionmaker, day: date) -> pd.DataFrame:
    """Committed commitments fully inside UTC ``day`` (all of them; the caller filters), ids as stored."""
    with sessions() as session:
        rows = store.due_for_settlement(session, day)
    frame = pd.DataFrame.from_records(rows, columns=["commitment_id", "community_id", "device_id", "period_start",
                                                     "period_end"])
    for column in ("period_start", "period_end"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


def settle_day(sessions: sessionmaker, day: date, readings: pd.DataFrame, *, now: datetime | None = None,
               batch_size: int = 1000, run_id: str | None = None,
               on_batch: Callable[[Sequence[Any], pd.DataFrame], None] | None = None) -> SettlementReport:
    """Settle the ``committed`` rows of UTC day ``day`` against hourly ``readings``.

    One transaction (and commit) per batch; ``on_batch(settled_ids, batch_points)`` runs after
    each commit (ids as stored, see ``store.due_for_settlement``). A crash loses at most the
    open batch, which the next run settles; rows settled before are never settled again.
    """
    now = now or datetime.now(UTC)
    report = SettlementReport(day=day)
    due = due_frame(sessions, day)
    report.selected = len(due)
    assigned = due["community_id"].notna() & due["device_id"].notna() if len(due) else pd.Series(dtype=bool)
    report.skipped_unassigned = int((~assigned).sum()) if len(due) else 0
    due = due[assigned] if len(due) else due
    start, end = store.utc_day_bounds(day)
    if not readings.empty:
        ts = pd.to_datetime(readings["ts"], utc=True, cache=False)  # mostly times already: no value cache
        readings = readings[(ts >= start) & (ts < end)]
    points = settle_points(due, readings)
    report.missing_readings = len(due) - len(points)
    # Plain (id, points, kWh) tuples: the ledger write takes them as they are, no per-row frames or dicts.
    rows = list(zip(points["commitment_id"].tolist(), points["reward_points_actual"].tolist(),
                    points["actual_kwh"].tolist()))
    for offset in range(0, len(rows), batch_size):
        batch = rows[offset:offset + batch_size]
        with store.write_transaction(sessions) as session:
            settled = store.record_settlements(session, batch, now=now, period_date=day, run_id=run_id)
        report.batches += 1
        report.settled_ids.extend(settled)
        report.already_settled += len(batch) - len(settled)
        if on_batch is not None:
            batch_points = points.iloc[offset:offset + batch_size]
            on_batch(settled, batch_points[batch_points["commitment_id"].isin(set(settled))])
    log.info("settlement of %s: %s", day, report.as_metadata())
    return report
