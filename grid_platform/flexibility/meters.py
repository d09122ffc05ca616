"""HTTP client of the meter-data service (``METER_API_URL``; local stand-in ``standins.meters``).

Reads device consumption (15-min or hourly) and the community exchange for local dates,
split into requests of at most 31 days. Transport errors, timeouts, 408, 429, 5xx and
unreadable or drifted bodies are retried (``grid_platform.http_retry``); the last failure
raises ``MeterDataError`` (a settlement run then leaves its commitments ``committed``).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pandas as pd

from grid_platform.http_retry import OwnsHttpClient, RetriesExhausted, RetryPolicy, call

MAX_SPAN_DAYS = 31
READING_FIELDS = {"device": ("ts", "consumption_kwh"), "community": ("ts", "device_id", "consumption_kwh"),
                  "exchange": ("ts", "consumption_kwh", "production_kwh", "net_exchange_kwh")}


class MeterDataError(RuntimeError):
    pass


class MeterClient(OwnsHttpClient):
    def __init__(self, base_url: str, *, timeout_s: float = 30.0, max_tries: int = 4, backoff_s: float = 0.5,
                 http: httpx.Client | None = None):
        self.base_url = base_url.rstrip("/")
        # A drifted or unreadable body is transient: the next answer may be whole.
        self.policy = RetryPolicy(timeout_s=timeout_s, max_tries=max_tries, backoff_s=backoff_s,
                                  transient_errors=(httpx.TransportError, ValueError, KeyError, TypeError))
        self._use_http(http)

    def _get(self, path: str, params: dict[str, str], fields: tuple[str, ...]) -> list[dict[str, Any]]:
        url = self.base_url + path

        def readings(response: httpx.Response) -> list[dict[str, Any]]:
            if response.status_code != 200:
                raise MeterDataError(f"GET {url} {params}: HTTP {response.status_code}: {response.text[:200]}")
            rows = response.json()["readings"]
            if not isinstance(rows, list) or any(not isinstance(r, dict) or any(f not in r for f in fields)
                                                 for r in rows):
                raise ValueError(f"readings without the fields {fields}")
            return rows

        try:
            return call(self._http, "GET", url, self.policy, params=params, read=readings).value
        except RetriesExhausted as exc:
            raise MeterDataError(f"GET {url} {params} failed after {self.policy.max_tries} tries: "
                                 f"{exc.last.detail}") from exc

    def _read(self, path: str, first: date, last: date, resolution: str, kind: str) -> pd.DataFrame:
        fields = READING_FIELDS[kind]
        rows: list[dict[str, Any]] = []
        day = first
        while day <= last:
            chunk_end = min(last, day + timedelta(days=MAX_SPAN_DAYS - 1))
            rows += self._get(path, {"date": day.isoformat(), "end_date": chunk_end.isoformat(),
                                     "resolution": resolution}, fields)
            day = chunk_end + timedelta(days=1)
        frame = pd.DataFrame(rows, columns=list(fields))
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        for column in fields[1:]:
            if column != "device_id":
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
        return frame

    def device_consumption(self, device_id: str, first: date, last: date, resolution: str = "15min") -> pd.DataFrame:
        """``ts, device_id, consumption_kwh`` of one meter for local days ``first..last``."""
        frame = self._read(f"/v1/meters/{device_id}/consumption", first, last, resolution, "device")
        frame.insert(1, "device_id", device_id)
        return frame

    def community_consumption(self, community_id: str, first: date, last: date,
                              resolution: str = "15min") -> pd.DataFrame:
        """``ts, device_id, consumption_kwh`` of every metered member."""
        return self._read(f"/v1/communities/{community_id}/consumption", first, last, resolution, "community")

    def community_exchange(self, community_id: str, first: date, last: date, resolution: str = "1h") -> pd.DataFrame:
        """``ts, consumption_kwh, production_kwh, net_exchange_kwh`` of the community."""
        return self._read(f"/v1/communities/{community_id}/exchange", first, last, resolution, "exchange")
