"""Local stand-in of the CKW public API (spec: ckw.md), on the real paths under `/api`.

Serves deterministic, plausible data for any date, shaped like the published examples and the
live samples, so `CKW_API_URL=http://127.0.0.1:8101/api` works like the real base URI:

- `GET /api/v1/netzinformationen/energie/dynamische-preise`: quarter-hour slots overlapping
  [start, end], the slot starting at `end` included; span > 31 days -> 400; UTC bounds -> UTC
  timestamps; slots past the published horizon (end of tomorrow from 11:20 local, else end of
  today) are cut silently.
- `GET /api/v1/netzinformationen/trasignale/{datum}`: signals of dates up to yesterday (local);
  a later date answers 200 with `[]`; `last`/`latest` mean yesterday.
- `GET /api/v1/netzinformationen/kraftwerke/lutersarni/live`: the reading of the current
  10-minute interval (re-polls inside the interval get the same `zeitstempel`).
- `GET /api/health`.

Data endpoints carry `x-ratelimit-*` headers (fixed window per endpoint) and answer 429 when the
window is spent. Errors use the bodies of the RAML `error-responses` trait. Faults are injected
on `/api/v1/...` through `faults.install_faults` (control routes under `/_standin/`).

This module shares no code with the platform's CKW client on purpose: it is an independent
reading of the same contract.
"""

from __future__ import annotations

import math
import os
import random
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from grid_platform.settings import STANDIN_PORTS
from grid_platform.standins.faults import FaultConfig, install_faults
from grid_platform.standins.server import serve

ZURICH = ZoneInfo("Europe/Zurich")

PRICES_PATH = "/api/v1/netzinformationen/energie/dynamische-preise"
TRA_PATH = "/api/v1/netzinformationen/trasignale/{datum}"
LUTERSARNI_PATH = "/api/v1/netzinformationen/kraftwerke/lutersarni/live"
HEALTH_PATH = "/api/health"
DATA_PREFIX = "/api/v1/"

TARIFF_TYPES = ("grid", "electricity", "integrated", "grid_usage")
SLOT = timedelta(minutes=15)
MAX_SPAN = timedelta(days=31)  # observed live; the RAML text says 30
PUBLICATION_CUTOFF = clock_time(11, 20)  # day-ahead prices are live from about 11:20 local
READING_INTERVAL_S = 600  # Lutersarni readings every 10 minutes
SUPPORTED_YEARS = range(2000, 2100)

# The examples of the RAML error-responses trait, verbatim: status -> (message key, message,
# description). The inconsistent case and the 'messege' key of 502 are the published ones, kept
# so that clients are exercised against them.
ERROR_BODIES: dict[int, tuple[str, str, str]] = {
    400: ("message", "Error 400 Bad Request", "Resquets made incorrectly"),
    403: ("message", "Error 403 Forbidden", "No access permission"),
    404: (
        "message",
        "Error 404 Resource Not Found",
        "Correct communication but the requested resource does not exist",
    ),
    405: (
        "message",
        "ERROR 405 Method Not Allowed",
        "Request made using an application method not supported by the purpose of the request",
    ),
    408: (
        "message",
        "Error 408 Request Timeout",
        "The server has decided to close the connection instead of continuing to wait.",
    ),
    413: (
        "message",
        "ERROR 413 Request Entity too large",
        "The request from the browser is too large and for that reason the server does not process it",
    ),
    415: (
        "message",
        "Error 415 Unsupported Media Type",
        "The browser request has a format that is not understood by the server and is not processed",
    ),
    429: (
        "message",
        "Error 429 Too Many Requests",
        'Code indicates the user has sent too many requests in a given amount of time ("rate limiting")',
    ),
    500: (
        "message",
        "ERROR 500 Internal Server Error",
        (
            "Error situations unrelated to the nature of the web server. "
            "The server cannot be more specific about what the problem"
        ),
    ),
    501: (
        "message",
        "Error 501 Not Implemented",
        "The server does not support any functionality needed to respond to the browser request.",
    ),
    502: (
        "messege",
        "Error 502 Bad Gateway",
        (
            "The server is acting as a proxy or gateway and has received an invalid response from the other "
            "server, so it cannot respond correctly to the browser request"
        ),
    ),
    503: (
        "message",
        "Error 503 Service Unavailable",
        "The server cannot respond to the browser request because it is congested or undergoing maintenance",
    ),
}

# Live responses carry a permissive CORS header (spec §1).
_COMMON_HEADERS = {"access-control-allow-origin": "*"}

Clock = Callable[[], datetime | date]


def error_body(status: int, url: str, description: str | None = None) -> dict[str, str]:
    """The trait's body for `status`; `url` is the request path and query of the failed call."""
    key, message, default = ERROR_BODIES.get(status, ("message", f"Error {status}", ""))
    return {key: message, "description": description or default, "url": url}


class BadRequest(ValueError):
    """A request the real API answers with 400; the text becomes the error description."""


# --- time helpers -------------------------------------------------------------------------


def _local_now(today: Clock | None) -> datetime:
    """Now in Europe/Zurich. A clock returning a date means noon of that date (prices published)."""
    if today is None:
        return datetime.now(ZURICH)
    value = today()
    if isinstance(value, datetime):
        return value.replace(tzinfo=ZURICH) if value.tzinfo is None else value.astimezone(ZURICH)
    return datetime.combine(value, clock_time(12, 0), ZURICH)


def _midnight(day: date) -> datetime:
    """Start of the local day, in UTC (aware arithmetic across DST must happen in UTC)."""
    return datetime.combine(day, clock_time(0), ZURICH).astimezone(UTC)


def _offset(local: datetime) -> str:
    minutes = int(local.utcoffset().total_seconds()) // 60  # type: ignore[union-attr]
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _minute_stamp(instant: datetime, utc: bool = False) -> str:
    """'2026-09-28T22:00Z' or '2026-09-29T00:00+02:00', as the API writes slot times."""
    if utc:
        return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    local = instant.astimezone(ZURICH)
    return local.strftime("%Y-%m-%dT%H:%M") + _offset(local)


def _second_stamp(instant: datetime) -> str:
    local = instant.astimezone(ZURICH)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + _offset(local)


def _microsecond_stamp(instant: datetime) -> str:
    local = instant.astimezone(ZURICH)
    return local.strftime("%Y-%m-%dT%H:%M:%S.%f") + _offset(local)


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")


def _parse_bound(name: str, raw: str) -> tuple[datetime, bool]:
    """Parse an RFC 3339 bound (seconds optional); return (instant in UTC, written in UTC?).

    An offset is mandatory: a naive time, or a '+' turned into a space by a client that did not
    encode the query, is a 400 rather than a guess.
    """
    text = raw.strip().upper()
    if not _RFC3339.fullmatch(text):
        raise BadRequest(f"{name} must be an RFC 3339 date-time with offset, got {raw!r}")
    try:
        instant = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadRequest(f"{name} is not a valid date-time: {raw!r}") from exc
    if instant.year not in SUPPORTED_YEARS:
        raise BadRequest(f"{name} must lie in the years {SUPPORTED_YEARS.start}-{SUPPORTED_YEARS.stop - 1}")
    return instant.astimezone(UTC), instant.utcoffset() == timedelta(0)


# --- dynamic prices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tariff:
    """Price levels of one tariff, in 1e-4 CHF/kWh so that sums are exact in decimal."""

    electricity: int  # flat energy price
    levy: int  # grid - grid_usage: constant 0.0303 in every published home_dynamic sample
    floor: tuple[int, int]  # range of the daily minimum grid price
    peak: tuple[int, int]  # range of the daily maximum grid price
    morning: float  # weights of the morning and evening load peaks in the daily shape
    evening: float


TARIFFS = {
    # integrated: daily minimum 0.1513-0.1533, daily maximum 0.25-0.33 (observed Aug-Sep 2026)
    "home_dynamic": _Tariff(
        electricity=1200, levy=303, floor=(313, 333), peak=(1300, 2100), morning=0.8, evening=1.0
    ),
    "business_dynamic": _Tariff(
        electricity=1090, levy=255, floor=(280, 300), peak=(1050, 1650), morning=1.0, evening=0.6
    ),
}


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


@lru_cache(maxsize=8192)
def _hourly_grid(tariff_name: str, day: date) -> tuple[int, ...]:
    """Grid price per elapsed hour of a local day (23, 24 or 25 hours), seeded by the date."""
    tariff = TARIFFS[tariff_name]
    rng = random.Random(f"ckw-prices/{tariff_name}/{day.isoformat()}")
    start = _midnight(day)
    hours = round((_midnight(day + timedelta(days=1)) - start).total_seconds() / 3600)
    summer = 0.5 + 0.5 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 172) / 365.25)
    morning = rng.uniform(0.5, 1.0) * tariff.morning
    evening = rng.uniform(0.6, 1.0) * tariff.evening
    solar = rng.uniform(0.2, 0.5) * (0.3 + 0.7 * summer)
    shape = []
    for i in range(hours):
        # The shape follows the wall clock, so the DST days keep their peaks at the usual hours.
        h = (start + timedelta(hours=i)).astimezone(ZURICH).hour + 0.5
        shape.append(
            0.2
            + 0.2 * (_bump(h, 0, 3) + _bump(h, 24, 3))
            + morning * _bump(h, 7.5, 1.5)
            + evening * _bump(h, 18.5, 2.2)
            - solar * _bump(h, 13, 2.0)
            + rng.uniform(-0.03, 0.03)
        )
    low, high = rng.randint(*tariff.floor), rng.randint(*tariff.peak)
    bottom, top = min(shape), max(shape)
    return tuple(round(low + (s - bottom) / (top - bottom) * (high - low)) for s in shape)


def _publication(day: date) -> datetime:
    """When the prices of `day` were published: the day before, between 11:18:30 and 11:20."""
    rng = random.Random(f"ckw-publication/{day.isoformat()}")
    base = datetime.combine(day - timedelta(days=1), clock_time(11, 18, 30), ZURICH)
    return base + timedelta(microseconds=rng.randrange(90_000_000))


def _published_until(now: datetime) -> datetime:
    """First slot start not yet published: end of tomorrow from 11:20 local, else end of today."""
    days = 2 if now.time() >= PUBLICATION_CUTOFF else 1
    return _midnight(now.date() + timedelta(days=days))


def prices_payload(
    now: datetime,
    tariff_type: str | None = None,
    tariff_name: str | None = None,
    start_timestamp: str | None = None,
    end_timestamp: str | None = None,
) -> dict[str, Any]:
    """The dynamic-prices response for these query parameters at local time `now`."""
    if tariff_type is not None and tariff_type not in TARIFF_TYPES:
        raise BadRequest(f"tariff_type must be one of {', '.join(TARIFF_TYPES)}, got {tariff_type!r}")
    tariff_name = "home_dynamic" if tariff_name is None else tariff_name
    if tariff_name not in TARIFFS:
        raise BadRequest(f"tariff_name must be one of {', '.join(TARIFFS)}, got {tariff_name!r}")
    start, start_utc = _parse_bound("start_timestamp", start_timestamp) if start_timestamp else (None, None)
    end, end_utc = _parse_bound("end_timestamp", end_timestamp) if end_timestamp else (None, None)
    # Defaults: the current local day exactly (its slots, not the first slot of tomorrow).
    start = start or _midnight(now.date())
    end = end or _midnight(now.date() + timedelta(days=1)) - timedelta(microseconds=1)
    if start > end:
        raise BadRequest("start_timestamp must not be after end_timestamp")
    if end - start > MAX_SPAN:
        raise BadRequest("start_timestamp and end_timestamp may not be more than 31 days apart")
    utc = bool(start_utc if start_timestamp else end_utc)
    tariff = TARIFFS[tariff_name]
    components = (tariff_type,) if tariff_type else TARIFF_TYPES
    last = min(end, _published_until(now) - timedelta(microseconds=1))

    prices = []
    # Slots overlapping [start, end] (the one starting exactly at end included); the
    # quarter-hour grid is the same in UTC and local time, Zurich offsets being whole hours.
    slot = datetime.fromtimestamp(start.timestamp() // 900 * 900, UTC)
    day = None
    while slot <= last:
        day = slot.astimezone(ZURICH).date()
        grid = _hourly_grid(tariff_name, day)[int((slot - _midnight(day)).total_seconds() // 3600)]
        values = {
            "grid": grid,
            "electricity": tariff.electricity,
            "integrated": grid + tariff.electricity,
            "grid_usage": grid - tariff.levy,
        }
        record: dict[str, Any] = {
            "start_timestamp": _minute_stamp(slot, utc),
            "end_timestamp": _minute_stamp(slot + SLOT, utc),
        }
        for component in components:
            record[component] = [{"unit": "CHF_kWh", "value": values[component] / 10_000}]
        prices.append(record)
        slot += SLOT
    # The revision marker is the publication of the newest day in the answer.
    newest = day if day is not None else (_published_until(now) - timedelta(days=1)).astimezone(ZURICH).date()
    return {"publication_timestamp": _microsecond_stamp(_publication(newest)), "prices": prices}


# --- TRA signals ------------------------------------------------------------------------------

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def tra_payload(now: datetime, datum: str) -> list[dict[str, str]]:
    """Signals of `datum` (YYYY-MM-DD, 'last' or 'latest' = yesterday); [] for today or later."""
    yesterday = now.date() - timedelta(days=1)
    if datum in ("last", "latest"):
        day = yesterday
    else:
        if not _DATE.fullmatch(datum):
            raise BadRequest(f"datum must be a date YYYY-MM-DD, 'last' or 'latest', got {datum!r}")
        try:
            day = date.fromisoformat(datum)
        except ValueError as exc:
            raise BadRequest(f"datum is not a valid date: {datum!r}") from exc
    if day > yesterday or day.year not in SUPPORTED_YEARS:
        return []
    return _tra_signals(day)


def _tra_signals(day: date) -> list[dict[str, str]]:
    """Three overlapping night boiler releases every day, sometimes day-time blocks."""
    rng = random.Random(f"ckw-tra/{day.isoformat()}")
    boiler_start = rng.randint(120, 160)
    plans = [  # (name, description, start minute after local midnight, duration minutes)
        ("000R", "Boiler 4 h", rng.randint(180, 220), rng.randint(205, 240)),
        ("001R", "Boiler 4 h 1", boiler_start, rng.randint(235, 250)),
        ("002R", "Boiler 4 h 2", boiler_start + rng.randint(20, 40), rng.randint(235, 250)),
    ]
    if rng.random() < 0.6:
        plans.append(("010R", "Wärmepumpe Sperre 2 h", rng.randint(660, 700), rng.randint(110, 125)))
    if rng.random() < 0.4:
        plans.append(("020R", "Boiler 2 h Mittag", rng.randint(780, 840), rng.randint(115, 125)))
    midnight = _midnight(day)
    return [
        {
            "Name": name,
            "Description": description,
            "Date": day.isoformat(),
            "Start": _second_stamp(midnight + timedelta(minutes=start)),
            "End": _second_stamp(midnight + timedelta(minutes=start + duration)),
        }
        for name, description, start, duration in plans
    ]


# --- Lutersarni plant -------------------------------------------------------------------------

RATED_MW = 2.3
CUT_IN_MS, RATED_MS = 3.0, 12.0


def _sensor(value: float) -> str:
    """A value as the plant reports it: a float32 printed with 8 significant digits ('20.697998')."""
    if abs(value) < 1e-3:
        return "0"
    return format(struct.unpack("<f", struct.pack("<f", value))[0], ".8g")


def lutersarni_payload(now: datetime) -> dict[str, Any]:
    """The reading of the 10-minute interval containing `now`, a function of that interval only."""
    reading = datetime.fromtimestamp(now.timestamp() // READING_INTERVAL_S * READING_INTERVAL_S, UTC)
    rng = random.Random(f"ckw-lutersarni/{reading.isoformat()}")
    hours = reading.timestamp() / 3600
    wind_ms = max(
        0.0,
        5.0
        + 3.0 * math.sin(2 * math.pi * hours / 31)
        + 2.0 * math.sin(2 * math.pi * hours / 7.3 + 1)
        + 1.2 * math.sin(2 * math.pi * hours / 2.1 + 2)
        + rng.gauss(0, 0.5),
    )
    in_service = rng.random() >= 0.03
    share = min(max((wind_ms**3 - CUT_IN_MS**3) / (RATED_MS**3 - CUT_IN_MS**3), 0.0), 1.0)
    active = round(RATED_MW * share, 2) if in_service else 0.0
    reactive = round(-0.02 - 0.01 * share + rng.uniform(-0.01, 0.01), 2) if in_service else 0.0
    voltage = 20.6 + 0.3 * math.sin(2 * math.pi * hours / 24) + rng.uniform(-0.08, 0.08)
    return {
        "zeitstempel": _minute_stamp(reading),
        "betriebsstatus": "in Betrieb" if in_service else "ausser Betrieb",
        "spannung": _sensor(voltage),
        "wirkleistung": _sensor(active),
        "blindleistung": _sensor(reactive),
        "windgeschwindigkeit": _sensor(wind_ms * 3.6),
        "einheiten": {
            "strom": "A",
            "spannung": "kV",
            "wirkleistung": "MW",
            "blindleistung": "Mvar",
            "windgeschwindigkeit": "km/h",
        },
    }


# --- rate limit -------------------------------------------------------------------------------


class FixedWindowLimiter:
    """`limit` requests per `window_s` per endpoint, windows starting at the first request."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("rate_limit must be >= 1 and rate_window_s > 0")
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, endpoint: str) -> tuple[bool, dict[str, str]]:
        """Count one request; return (allowed, x-ratelimit-* headers)."""
        now = self._clock()
        start, count = self._windows.get(endpoint, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        count += 1
        self._windows[endpoint] = (start, count)
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(self.limit - count, 0)),
            "x-ratelimit-reset": str(max(math.ceil((start + self.window_s - now) * 1000), 0)),
        }
        return count <= self.limit, headers

    def reset(self) -> None:
        self._windows.clear()


# --- app --------------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload),
        status_code=status,
        media_type="application/json",
        headers={**_COMMON_HEADERS, **(headers or {})},
    )


def _request_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def create_app(
    faults: FaultConfig | None = None,
    rate_limit: int = 1000,
    rate_window_s: float = 60,
    today: Clock | None = None,
) -> FastAPI:
    """The CKW stand-in app.

    `faults`: start-up faults (None: `$STANDIN_FAULTS`, else none). `rate_limit` requests per
    `rate_window_s` seconds per endpoint. `today`: clock returning the current time (aware, or
    naive = Europe/Zurich) or a date (= noon that day); None = the system clock.
    """
    app = FastAPI(title="CKW public API stand-in", docs_url=None, redoc_url=None)
    limiter = FixedWindowLimiter(rate_limit, rate_window_s)
    install_faults(app, faults, data_prefixes=(DATA_PREFIX,), error_body=error_body, on_reset=[limiter.reset])

    def answer(endpoint: str, request: Request, build: Callable[[datetime], Any]) -> Response:
        allowed, headers = limiter.hit(endpoint)
        if not allowed:
            return _json(error_body(429, _request_url(request)), 429, headers)
        try:
            payload = build(_local_now(today))
        except BadRequest as exc:
            return _json(error_body(400, _request_url(request), str(exc)), 400, headers)
        return _json(payload, 200, headers)

    @app.get(PRICES_PATH)
    async def dynamische_preise(
        request: Request,
        tariff_type: str | None = None,
        tariff_name: str | None = None,
        start_timestamp: str | None = None,
        end_timestamp: str | None = None,
    ) -> Response:
        return answer(
            "dynamische-preise",
            request,
            lambda now: prices_payload(now, tariff_type, tariff_name, start_timestamp, end_timestamp),
        )

    @app.get(TRA_PATH)
    async def trasignale(request: Request, datum: str) -> Response:
        return answer("trasignale", request, lambda now: tra_payload(now, datum))

    @app.get(LUTERSARNI_PATH)
    async def lutersarni_live(request: Request) -> Response:
        return answer("lutersarni-live", request, lutersarni_payload)

    @app.get(HEALTH_PATH)
    async def health() -> Response:
        return _json({"message": "health-check running"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _json(error_body(exc.status_code, _request_url(request)), exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        return _json(error_body(500, _request_url(request)), 500)

    return app


def main() -> None:
    port = int(os.environ.get("PORT") or STANDIN_PORTS["ckw"])
    serve(create_app(), port)


if __name__ == "__main__":
    main()
