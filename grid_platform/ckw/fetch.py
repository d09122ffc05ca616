"""What one ingestion run asks of the CKW API, stage by stage, each stage isolated.

A failed or deferred call is reported and skipped; rows of the calls that worked still
land (ckw.md §8: one failure does not stop the others).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from grid_platform.ckw.client import PLANT_LIVE, PRICES, TRA, CkwClient, CkwDeferred, CkwError
from grid_platform.ckw.ingest_log import IngestLog
from grid_platform.ckw.normalise import normalise_plant, normalise_prices, normalise_tra
from grid_platform.ckw.windows import rfc3339_utc, split_span


@dataclass
class FetchReport:
    calls: int = 0
    rows: int = 0
    failures: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failures and not self.deferred


def _call(report: FetchReport, fn, *args):
    report.calls += 1
    try:
        return fn(*args)
    except CkwDeferred as exc:
        report.deferred.append(str(exc))
    except CkwError as exc:
        report.failures.append(str(exc))
    return None


def fetch_prices(client: CkwClient, log: IngestLog, report: FetchReport, start: datetime, end: datetime,
                 tariff_names: tuple[str, ...]) -> Iterator[list[dict]]:
    """Price rows for slots starting in [start, end), one batch per API window (within the span limit)."""
    for tariff_name in tariff_names:
        for window_start, window_end in split_span(start, end):
            response = _call(report, client.prices, rfc3339_utc(window_start), rfc3339_utc(window_end), tariff_name)
            if response is None:
                continue
            rows, rejects = normalise_prices(response.payload, endpoint=PRICES, tariff_name=tariff_name,
                                             ingested_at=datetime.now(UTC))
            for reject in rejects:
                log.reject(reject)
            # The API includes the slot that starts at end_timestamp: it belongs to the next window.
            batch = [row for row in rows if window_start <= row["slot_start"] < window_end]
            report.rows += len(batch)
            yield batch


def fetch_tra_signals(client: CkwClient, log: IngestLog, report: FetchReport,
                      days: list[date]) -> Iterator[list[dict]]:
    for day in days:
        response = _call(report, client.tra_signals, day.isoformat())
        if response is None:
            continue
        rows, rejects = normalise_tra(response.payload, endpoint=TRA, ingested_at=datetime.now(UTC))
        for reject in rejects:
            log.reject(reject)
        report.rows += len(rows)
        yield rows


def fetch_plant_status(client: CkwClient, log: IngestLog, report: FetchReport) -> Iterator[list[dict]]:
    response = _call(report, client.plant_live)
    if response is None:
        return
    rows, rejects = normalise_plant(response.payload, endpoint=PLANT_LIVE, ingested_at=datetime.now(UTC))
    for reject in rejects:
        log.reject(reject)
    report.rows += len(rows)
    yield rows
