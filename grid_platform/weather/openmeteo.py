"""Client of an Open-Meteo-style forecast API (``GET /v1/forecast``).

One request covers many points (comma-separated ``latitude``/``longitude`` lists, answered
with a JSON list in request order); points are sent in chunks to keep URLs short. Units are
asked for explicitly (``wind_speed_unit=ms``, ``timezone=UTC``) and checked in the answer.

Transient failures are retried with exponential backoff (``grid_platform.http_retry``):
timeouts and broken connections, HTTP 5xx and 429 (honouring ``Retry-After`` /
``X-RateLimit-Reset`` up to ``max_backoff_s``), bodies that are not JSON or not the expected
shape (a gateway page, a truncated answer). Other 4xx are the caller's mistake and raise at
once with the API's ``reason``.

``past_days = 1`` is the default because the risk model works on network-local days: with
``timezone=UTC`` the first local day of the horizon starts before UTC midnight, and without the
previous UTC day that local day would be incomplete (and so carry no level).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date

import httpx
import numpy as np
import pandas as pd

from grid_platform import http_retry
from grid_platform.http_retry import MalformedBody, ServiceRetry
from grid_platform.weather.quality import HOURLY_COLUMNS, empty_hourly

FORECAST_PATH = "/v1/forecast"
HOURLY = {"wind_speed_10m": "wind_speed_ms", "wind_gusts_10m": "wind_gust_ms", "temperature_2m": "temp_c"}
EXPECTED_UNITS = {"wind_speed_10m": "m/s", "wind_gusts_10m": "m/s", "temperature_2m": "°C"}
SOURCE = "open-meteo"


class WeatherApiError(RuntimeError):
    """The forecast API failed for good (after retries, or with a non-retryable answer)."""


FORECAST_RETRY = ServiceRetry()


def _wait_hint(response: httpx.Response) -> float | None:
    """The wait a 429/5xx asks for: ``Retry-After``, else ``X-RateLimit-Reset`` (milliseconds, as the
    stand-ins send it)."""
    if response.status_code != 429 and response.status_code < 500:
        return None  # an answer with a bad body: back off, whatever rate headers it carries
    wait = http_retry.retry_after(response)
    if wait is None and "x-ratelimit-reset" in response.headers:
        try:
            return max(float(response.headers["x-ratelimit-reset"]) / 1000.0, 0.0)
        except ValueError:
            return None
    return wait


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("reason") or body.get("message") or body) if isinstance(body, dict) else str(body)[:200]


def _locations(payload: object, n_points: int) -> list[dict]:
    """Validate the answer's shape; a wrong shape is a transient fault (``MalformedBody``)."""
    locations = payload if isinstance(payload, list) else [payload]
    if len(locations) != n_points:
        raise MalformedBody(f"expected {n_points} locations, got {len(locations)}")
    for loc in locations:
        if not isinstance(loc, dict):
            raise MalformedBody("location entry is not an object")
        hourly, units = loc.get("hourly"), loc.get("hourly_units")
        if not isinstance(hourly, dict) or not isinstance(units, dict) or not isinstance(hourly.get("time"), list):
            raise MalformedBody("answer without hourly data")
        for key in ("latitude", "longitude", "elevation"):
            if not isinstance(loc.get(key), int | float) or isinstance(loc.get(key), bool):
                raise MalformedBody(f"answer without numeric {key}")
        n = len(hourly["time"])
        for variable, unit in EXPECTED_UNITS.items():
            values = hourly.get(variable)
            if not isinstance(values, list) or len(values) != n:
                raise MalformedBody(f"hourly {variable} missing or of the wrong length")
            if units.get(variable) != unit:
                raise WeatherApiError(f"{variable} in {units.get(variable)!r}, expected {unit!r}")
            if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
                raise MalformedBody(f"hourly {variable} has non-numeric values")
    return locations


def _get_json(client: httpx.Client, url: str, params: dict, n_points: int, retry: ServiceRetry,
              sleep: Callable[[float], None]) -> list[dict]:
    def locations(response: httpx.Response) -> list[dict]:
        if response.status_code >= 400:
            raise WeatherApiError(f"HTTP {response.status_code} from {url}: {_reason(response)}")
        try:
            payload = json.loads(response.content)
        except ValueError as exc:
            raise MalformedBody(f"not JSON: {exc}") from exc
        return _locations(payload, n_points)

    try:
        return http_retry.call(client, "GET", url, retry.policy(), params=params, read=locations,
                               server_wait=_wait_hint, sleep=sleep).value
    except http_retry.RetriesExhausted as exc:
        raise WeatherApiError(f"{url}: gave up after {retry.attempts} attempts; "
                              f"last error: {exc.last.detail}") from exc


def fetch_forecast(
    base_url: str,
    points: pd.DataFrame,
    *,
    forecast_days: int = 3,
    past_days: int = 1,
    start_date: date | None = None,
    end_date: date | None = None,
    models: str | None = None,
    chunk_size: int = 50,
    retry: ServiceRetry = FORECAST_RETRY,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Hourly forecast rows (``quality.HOURLY_COLUMNS``, not yet cleaned) for ``points``.

    ``points`` has ``point_id, lat, lon``. Each row keeps the caller's ``point_id`` and the
    position and elevation the API reports (its grid cell). ``start_date``/``end_date``
    (both or neither) replace ``forecast_days``/``past_days``. ``source`` reads
    ``open-meteo:<models or best_match>``.
    """
    if (start_date is None) != (end_date is None):
        raise ValueError("give both start_date and end_date, or neither")
    missing = {"point_id", "lat", "lon"} - set(points.columns)
    if missing:
        raise ValueError(f"points lack columns {sorted(missing)}")
    if points["point_id"].duplicated().any():
        raise ValueError("points have duplicate point_id")
    common: dict[str, str | int] = {
        "hourly": ",".join(HOURLY), "timezone": "UTC", "wind_speed_unit": "ms", "timeformat": "iso8601",
    }
    if start_date is not None:
        common |= {"start_date": start_date.isoformat(), "end_date": end_date.isoformat()}
    else:
        common |= {"forecast_days": forecast_days, "past_days": past_days}
    if models:
        common["models"] = models
    source = f"{SOURCE}:{models or 'best_match'}"
    url = base_url.rstrip("/") + FORECAST_PATH
    own = client is None
    http = client or httpx.Client()
    frames: list[pd.DataFrame] = []
    try:
        for start in range(0, len(points), chunk_size):
            chunk = points.iloc[start:start + chunk_size]
            params = common | {"latitude": ",".join(f"{v:.6f}" for v in chunk["lat"]),
                               "longitude": ",".join(f"{v:.6f}" for v in chunk["lon"])}
            for point_id, loc in zip(chunk["point_id"], _get_json(http, url, params, len(chunk), retry, sleep)):
                frames.append(_rows(point_id, loc, source))
    finally:
        if own:
            http.close()
    if not frames:
        return empty_hourly()
    return pd.concat(frames, ignore_index=True)[HOURLY_COLUMNS]


def _rows(point_id: str, loc: dict, source: str) -> pd.DataFrame:
    hourly = loc["hourly"]
    frame = pd.DataFrame({
        "point_id": point_id,
        "lat": float(loc["latitude"]),
        "lon": float(loc["longitude"]),
        "elevation_m": float(loc["elevation"]),
        "ts_utc": pd.to_datetime(hourly["time"], utc=True),
        **{column: np.asarray(hourly[variable], dtype=float) for variable, column in HOURLY.items()},
        "source": source,
        "gust_derived": False,
        "interpolated": False,
        "quality_flags": None,
    })
    return frame

