"""Settlement of 100,000 commitments against a month of meter data of the demo community.

Data: the demo registry's 15-minute consumption for May 2026 from the SimBench load profiles
(``flexibility.participants``), aggregated to the hourly settlement rows; 100,000 committed
windows of 1-3 h inside UTC days, on random metered devices, accepted the day before and
stored in the order accepted (as the API inserts them), in a SQLite state database. Both
sides use the platform's engine (``store.db.make_engine``: WAL, ``synchronous=NORMAL``, 64 MiB
page cache) on copies of the same file. One settlement run per UTC day (the sensor's unit),
one commit per run on both sides.

Two lines:

* ``flexibility_settlement_points``: what a run computes. ours: the day's selection (one
  query) and ``settlement.settle_points`` (vectorised: numpy searchsorted over integer
  prefix sums). baseline: the seed's row-by-row ORM loop: one readings query per commitment
  (SQLAlchemy session, readings table indexed by device and time), Python sum and round.
  Measured on a 5,000-commitment sample and scaled linearly (``note``); the points of the
  sample must equal ours.
* ``flexibility_settlement_end_to_end``: the same plus the writes. ours: ``settle_day`` with
  the exactly-once ledger (per batch its ledger row and one DBAPI ``executemany`` of plain
  tuples of the conditional UPDATE that settles each commitment with the batch's id).
  baseline: the ORM loop setting the ORM objects, one commit per day, on two whole days
  scaled linearly; the resulting rows must equal ours.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Float, Index, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from grid_platform.flexibility.participants import ParticipantRegistry, device_consumption, local_day_bounds
from grid_platform.flexibility.settlement import due_frame, points_for_readings, settle_day, settle_points
from grid_platform.store import flexibility as store
from grid_platform.store.db import make_engine, upgrade
from grid_platform.store.models import UTCDateTime

TZ = "Europe/Zurich"
MONTH = (date(2026, 5, 1), date(2026, 5, 31))
N_COMMITMENTS = 100_000
SAMPLE = 5_000
BATCH = 5_000  # rows per commit (FLEX_SETTLEMENT_BATCH); a day has ~3,200 here
NOW = datetime(2026, 6, 2, tzinfo=UTC)


class ReadingsBase(DeclarativeBase):
    pass


class MeterReading(ReadingsBase):
    """The hourly settlement rows as the seed's loop reads them (one query per commitment)."""

    __tablename__ = "meter_readings"
    __table_args__ = (Index("ix_meter_readings_device_ts", "device_id", "ts"),)

    device_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    consumption_kwh: Mapped[float] = mapped_column(Float)


def month_readings() -> tuple[pd.DataFrame, int]:
    registry = ParticipantRegistry.demo({"rec-demo": 300}, 2026)
    members = registry.all_members("rec-demo")
    # The local days around the month, so every UTC hour of it has its readings.
    start = local_day_bounds(MONTH[0] - timedelta(days=1), TZ)[0]
    end = local_day_bounds(MONTH[1] + timedelta(days=1), TZ)[1]
    quarter = device_consumption(members, start, end, TZ, "15min")
    hourly = (quarter.assign(ts=quarter["ts"].dt.floor("h")).groupby(["device_id", "ts"], as_index=False)
              ["consumption_kwh"].sum().round(3))
    return hourly, len(quarter)


def commitments(devices: list[str]) -> list[dict]:
    """Windows accepted the day before (suggestions are for the next day), stored in the order accepted."""
    rng = random.Random(2026)
    days = (MONTH[1] - MONTH[0]).days + 1
    rows = []
    for i in range(N_COMMITMENTS):
        day = MONTH[0] + timedelta(days=rng.randrange(days))
        hours = rng.randint(1, 3)
        start = datetime(day.year, day.month, day.day, rng.randrange(0, 24 - hours), tzinfo=UTC)
        accepted = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(seconds=rng.randrange(1, 86_400))
        rows.append({"id": store.uuid.UUID(int=rng.getrandbits(128)), "user_id": f"user-{i % 300}",
                     "suggestion_id": f"w{i}", "suggestion_type": "shift-consumption", "community_id": "rec-demo",
                     "device_id": rng.choice(devices), "period_start": start,
                     "period_end": start + timedelta(hours=hours), "committed_at": accepted,
                     "status": "committed", "reward_points_estimated": 10})
    return sorted(rows, key=lambda row: row["committed_at"])


def prepare(workdir: Path, hourly: pd.DataFrame) -> tuple[str, str]:
    ours_url = f"sqlite:///{workdir / 'ours.db'}"
    upgrade(ours_url)
    engine = make_engine(ours_url)
    with store.flexibility_sessions(engine).begin() as session:
        session.execute(store.Commitment.__table__.insert(), commitments(sorted(hourly["device_id"].unique())))
    engine.dispose()
    shutil.copy(workdir / "ours.db", workdir / "baseline.db")
    baseline_url = f"sqlite:///{workdir / 'baseline.db'}"
    engine = make_engine(baseline_url)
    ReadingsBase.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(MeterReading.__table__.insert(), [
            {"device_id": d, "ts": t.to_pydatetime(), "consumption_kwh": float(v)}
            for d, t, v in zip(hourly["device_id"], hourly["ts"], hourly["consumption_kwh"])])
    engine.dispose()
    return ours_url, baseline_url


def daily(hourly: pd.DataFrame) -> dict[date, pd.DataFrame]:
    """The hourly rows of each UTC day: the settlement-data partition a run is given."""
    return {day: rows for day, rows in hourly.groupby(hourly["ts"].dt.date)}


def days() -> list[date]:
    return [MONTH[0] + timedelta(days=k) for k in range((MONTH[1] - MONTH[0]).days + 1)]


def ours_points(url: str, by_day: dict[date, pd.DataFrame]) -> tuple[float, pd.DataFrame]:
    engine = make_engine(url)
    sessions = store.flexibility_sessions(engine)
    started = time.perf_counter()
    parts = [settle_points(due_frame(sessions, day), by_day[day]) for day in days()]
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, pd.concat(parts, ignore_index=True)


def ours_end_to_end(url: str, by_day: dict[date, pd.DataFrame]) -> tuple[float, int]:
    engine = make_engine(url)
    sessions = store.flexibility_sessions(engine)
    started = time.perf_counter()
    settled = sum(len(settle_day(sessions, day, by_day[day], now=NOW, batch_size=BATCH).settled_ids) for day in days())
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, settled


def _readings_of(session, row) -> list:
    return session.scalars(select(MeterReading.consumption_kwh)
                           .where(MeterReading.device_id == row.device_id, MeterReading.ts >= row.period_start,
                                  MeterReading.ts < row.period_end)
                           .order_by(MeterReading.ts).limit(24)).all()


def baseline_points(url: str, sample_ids: list) -> tuple[float, dict]:
    engine = make_engine(url)
    sessions = store.flexibility_sessions(engine)
    points = {}
    started = time.perf_counter()
    with sessions() as session:
        for row in session.scalars(select(store.Commitment).where(store.Commitment.id.in_(sample_ids))):
            result = points_for_readings(_readings_of(session, row))
            if result is not None:
                points[row.id] = result
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, points


def baseline_end_to_end(url: str, sample_days: list[date]) -> tuple[float, int]:
    engine = make_engine(url)
    sessions = store.flexibility_sessions(engine)
    rows_done = 0
    started = time.perf_counter()
    for day in sample_days:
        start, end = store.utc_day_bounds(day)
        with sessions() as session:
            for row in session.scalars(select(store.Commitment).where(
                    store.Commitment.status == "committed", store.Commitment.period_start >= start,
                    store.Commitment.period_end <= end)):
                rows_done += 1
                result = points_for_readings(_readings_of(session, row))
                if result is None:
                    continue
                row.reward_points_actual, row.actual_kwh = result
                row.status, row.settled_at = "settled", NOW
            session.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, rows_done


def outcome(url: str, where) -> dict:
    engine = make_engine(url)
    with store.flexibility_sessions(engine)() as session:
        rows = session.execute(select(store.Commitment.id, store.Commitment.status,
                                      store.Commitment.reward_points_actual, store.Commitment.actual_kwh,
                                      store.Commitment.settled_at).where(where)).all()
    engine.dispose()
    return {r.id: (r.status, r.reward_points_actual, None if r.actual_kwh is None else round(r.actual_kwh, 6),
                   r.settled_at) for r in rows}


def line(name: str, ours_s: float, baseline_s: float, **extra) -> str:
    return json.dumps({"name": name, "n": N_COMMITMENTS, "ours_s": round(ours_s, 3), "baseline_s": round(baseline_s, 3),
                       "ratio": round(baseline_s / ours_s, 1), **extra})


def main() -> None:
    hourly, quarter_rows = month_readings()
    by_day = daily(hourly)
    sample_days = days()[:2]
    with tempfile.TemporaryDirectory(prefix="bench-flex-") as tmp:
        workdir = Path(tmp)
        ours_url, baseline_url = prepare(workdir, hourly)
        points_s, points = ours_points(ours_url, by_day)
        if len(points) != N_COMMITMENTS:
            raise AssertionError(f"ours found readings for {len(points)} of {N_COMMITMENTS} commitments")
        sample = random.Random(1).sample(list(points["commitment_id"]), SAMPLE)
        sample_s, expected = baseline_points(baseline_url, [store.as_uuid(cid) for cid in sample])
        ours_sample = points.set_index("commitment_id").loc[sample]
        got = {store.as_uuid(cid): (int(r.reward_points_actual), r.actual_kwh) for cid, r in ours_sample.iterrows()}
        if got != expected:
            raise AssertionError("points of the vectorised settlement and the ORM loop differ")

        # The baseline's days bracket ours (one before, one after): a load change on the shared
        # machine during the run weighs on both sides alike.
        first_s, first_rows = baseline_end_to_end(baseline_url, sample_days[:1])
        e2e_s, settled = ours_end_to_end(ours_url, by_day)
        if settled != N_COMMITMENTS:
            raise AssertionError(f"ours settled {settled} of {N_COMMITMENTS}")
        second_s, second_rows = baseline_end_to_end(baseline_url, sample_days[1:])
        loop_s, loop_rows = first_s + second_s, first_rows + second_rows
        start, end = store.utc_day_bounds(sample_days[0])[0], store.utc_day_bounds(sample_days[-1])[1]
        in_days = (store.Commitment.period_start >= start) & (store.Commitment.period_end <= end)
        if outcome(ours_url, in_days) != outcome(baseline_url, in_days):
            raise AssertionError("rows settled by the ledger path and by the ORM loop differ")
    print(line("flexibility_settlement_points", points_s, sample_s * N_COMMITMENTS / SAMPLE,
               baseline_sample=SAMPLE, baseline_sample_s=round(sample_s, 3), quarter_hour_rows=quarter_rows,
               hourly_rows=len(hourly),
               note=f"baseline measured on a {SAMPLE}-commitment sample and scaled linearly to {N_COMMITMENTS}; "
                    "points and kWh identical on the sample"))
    print(line("flexibility_settlement_end_to_end", e2e_s, loop_s * N_COMMITMENTS / loop_rows,
               baseline_sample=loop_rows, baseline_sample_s=round(loop_s, 3), runs_ours=len(days()),
               note=f"baseline measured on {len(sample_days)} whole days, one before and one after ours "
                    f"({loop_rows} commitments, one commit per "
                    f"day like ours) and scaled linearly to {N_COMMITMENTS}; settled rows identical on those days; "
                    "ours includes the exactly-once ledger writes"))


if __name__ == "__main__":
    main()
