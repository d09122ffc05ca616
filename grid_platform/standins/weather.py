"""Stand-in of an Open-Meteo-style forecast API (``GET /v1/forecast``), port 8103.

Deterministic, plausible hourly weather for any point and date, built from the DWD test
reference year (TRY 2010) of the nearest of the 15 stations (``scripts/fetch_demandlib.py``
must have run): the station's cleaned hours for the same MEZ calendar hour, with derived
gusts, moved to the requested point by a documented synthetic terrain model:

* ``elevation = max(0, station elevation + 150 m * sin(3 lat) * cos(2 lon))`` (degrees in
  radians of the formula; smooth, ~±150 m around the station) — the stand-in has no DEM;
* temperature follows the standard lapse rate, ``-6.5 K/km`` for the elevation difference;
* wind and gusts are scaled by ``1 + 0.12 sin(5 lon) cos(4 lat)`` (exposure), gusts never
  below the mean wind.

The answer mirrors Open-Meteo: one object per location, a JSON list when several
``latitude``/``longitude`` values are given; ``hourly``, ``current``, ``forecast_days``,
``past_days``, ``start_date``/``end_date``, ``wind_speed_unit`` (``kmh`` default, ``ms``,
``mph``, ``kn``), ``timezone`` (``UTC``/``GMT`` only), errors as ``400 {"error": true,
"reason": ...}``. Coordinates are echoed, not snapped to a model grid. ``models`` is
accepted and ignored. Faults come from the shared middleware (``standins.faults``).

Run: ``python -m grid_platform.standins.weather`` (port ``$PORT`` or 8103).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from grid_platform.settings import STANDIN_PORTS
from grid_platform.standins.faults import FaultConfig, install_faults
from grid_platform.standins.server import serve
from grid_platform.weather.dwd_try import default_try_dir, load_stations, load_try_year, nearest_station
from grid_platform.weather.quality import QualityRules

VARIABLES = ("wind_speed_10m", "wind_gusts_10m", "temperature_2m")
WIND_UNITS = {"kmh": (3.6, "km/h"), "ms": (1.0, "m/s"), "mph": (2.236936, "mp/h"), "kn": (1.943844, "kn")}
LAPSE_K_PER_M = -0.0065
TERRAIN_AMPLITUDE_M = 150.0
EXPOSURE_AMPLITUDE = 0.12
MAX_FORECAST_DAYS, MAX_PAST_DAYS = 16, 92
# The reference year is cleaned in the stations' own (MEZ-like) civil time; any zone works
# here because the stand-in serves UTC hours.
_CLEAN_TZ = "Europe/Berlin"


class _BadRequest(ValueError):
    pass


def _floats(raw: str | None, name: str) -> list[float]:
    if raw is None or raw == "":
        raise _BadRequest(f"Parameter '{name}' is required")
    try:
        return [float(v) for v in raw.split(",")]
    except ValueError as exc:
        raise _BadRequest(f"Parameter '{name}' must be a comma-separated list of numbers") from exc


def _names(raw: str | None) -> list[str]:
    names = [v for v in (raw or "").split(",") if v]
    unknown = [v for v in names if v not in VARIABLES]
    if unknown:
        raise _BadRequest(f"Cannot initialize WeatherVariable from invalid String value {unknown[0]}")
    return names


def _int(raw: str | None, name: str, default: int, upper: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise _BadRequest(f"Parameter '{name}' must be an integer") from exc
    if not 0 <= value <= upper:
        raise _BadRequest(f"Parameter '{name}' must be between 0 and {upper}")
    return value


def _day(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise _BadRequest(f"Parameter '{name}' must be a date YYYY-MM-DD") from exc


class WeatherModel:
    """The reference-year climatology of the stations, moved to any point (see module doc)."""

    def __init__(self, try_dir: Path) -> None:
        self.stations = load_stations(try_dir)
        self._rules = QualityRules()
        self._year = lru_cache(maxsize=64)(self._load_year)

    def _load_year(self, region: int, year: int) -> pd.DataFrame:
        path = self.stations.loc[self.stations["region"] == region, "path"].iloc[0]
        _, hourly, _ = load_try_year(path, year, self._rules, _CLEAN_TZ)
        return hourly.set_index("ts_utc")[["wind_speed_ms", "wind_gust_ms", "temp_c"]]

    @staticmethod
    def elevation(lat: float, lon: float, station_elevation: float) -> float:
        return round(max(0.0, station_elevation + TERRAIN_AMPLITUDE_M * math.sin(3 * lat) * math.cos(2 * lon)))

    def hours(self, lat: float, lon: float, start: datetime, end: datetime) -> tuple[float, pd.DataFrame]:
        """Elevation and the UTC hours ``start <= ts < end`` (m/s, °C) at the point."""
        station = nearest_station(self.stations, lat, lon)
        years = range(start.year, (end - timedelta(hours=1)).year + 1)
        # Reference years are cleaned per calendar year; the first MEZ hour of a year lies in the
        # previous UTC year, so neighbouring years are loaded and the index restricted.
        frame = pd.concat([self._year(int(station["region"]), y) for y in range(years[0], years[-1] + 2)])
        frame = frame[~frame.index.duplicated(keep="first")]
        index = pd.date_range(start, end, freq="h", inclusive="left", tz="UTC")
        frame = frame.reindex(index)
        elevation = self.elevation(lat, lon, float(station["elevation_m"]))
        exposure = 1 + EXPOSURE_AMPLITUDE * math.sin(5 * lon) * math.cos(4 * lat)
        speed = (frame["wind_speed_ms"] * exposure).round(1)
        out = pd.DataFrame({
            "wind_speed_10m": speed,
            "wind_gusts_10m": np.maximum(frame["wind_gust_ms"] * exposure, speed).round(1),
            "temperature_2m": (frame["temp_c"]
                               + LAPSE_K_PER_M * (elevation - float(station["elevation_m"]))).round(1),
        }, index=index)
        return float(elevation), out


def _json_values(series: pd.Series, factor: float) -> list[float | None]:
    values = (series * factor).round(1) if factor != 1.0 else series
    return [None if pd.isna(v) else float(v) for v in values]


def create_app(try_dir: Path | None = None, *, faults: FaultConfig | None = None,
               clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The stand-in app. ``clock()`` -> aware UTC datetime ("now"); defaults to the system clock."""
    model = WeatherModel(Path(try_dir) if try_dir else default_try_dir())
    now = clock or (lambda: datetime.now(UTC))
    app = FastAPI(title="Weather forecast API (stand-in)", version="1")
    install_faults(app, faults, data_prefixes=("/v1/",),
                   error_body=lambda status, url: {"error": True, "reason": f"Error {status} (injected)"})

    @app.get("/v1/forecast")
    def forecast(request: Request) -> JSONResponse:
        started = time.perf_counter()
        q = request.query_params
        try:
            lats, lons = _floats(q.get("latitude"), "latitude"), _floats(q.get("longitude"), "longitude")
            if len(lats) != len(lons):
                raise _BadRequest("Parameter 'latitude' and 'longitude' must have the same number of elements")
            if any(not -90 <= v <= 90 for v in lats) or any(not -180 <= v <= 180 for v in lons):
                raise _BadRequest("Latitude must be in range of -90 to 90°. Longitude must be in range of -180 to 180°.")
            hourly, current = _names(q.get("hourly")), _names(q.get("current"))
            if q.get("timezone", "GMT").upper() not in ("UTC", "GMT"):
                raise _BadRequest("The stand-in serves timezone=UTC/GMT only")
            if q.get("timeformat", "iso8601") != "iso8601":
                raise _BadRequest("The stand-in serves timeformat=iso8601 only")
            if q.get("wind_speed_unit", "kmh") not in WIND_UNITS:
                raise _BadRequest(f"Invalid wind_speed_unit, one of {sorted(WIND_UNITS)}")
            factor, unit = WIND_UNITS[q.get("wind_speed_unit", "kmh")]
            clock_now = now()
            today = clock_now.date()
            if q.get("start_date") or q.get("end_date"):
                first, last = _day(q.get("start_date", ""), "start_date"), _day(q.get("end_date", ""), "end_date")
                if last < first:
                    raise _BadRequest("Parameter 'end_date' must not be before 'start_date'")
            else:
                first = today - timedelta(days=_int(q.get("past_days"), "past_days", 0, MAX_PAST_DAYS))
                last = today + timedelta(days=_int(q.get("forecast_days"), "forecast_days", 7, MAX_FORECAST_DAYS) - 1)
        except _BadRequest as exc:
            return JSONResponse({"error": True, "reason": str(exc)}, status_code=400)
        start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        current_hour = clock_now.replace(minute=0, second=0, microsecond=0)
        units = {v: unit if v.startswith("wind") else "°C" for v in VARIABLES}
        locations = []
        for lat, lon in zip(lats, lons):
            elevation, frame = model.hours(lat, lon, start, end)
            loc: dict[str, Any] = {
                "latitude": round(lat, 6), "longitude": round(lon, 6), "utc_offset_seconds": 0,
                "timezone": "GMT", "timezone_abbreviation": "GMT", "elevation": elevation,
            }
            if hourly:
                loc["hourly_units"] = {"time": "iso8601", **{v: units[v] for v in hourly}}
                loc["hourly"] = {"time": [t.strftime("%Y-%m-%dT%H:%M") for t in frame.index],
                                 **{v: _json_values(frame[v], 1.0 if v == "temperature_2m" else factor)
                                    for v in hourly}}
            if current:
                _, now_frame = model.hours(lat, lon, current_hour, current_hour + timedelta(hours=1))
                loc["current_units"] = {"time": "iso8601", "interval": "seconds", **{v: units[v] for v in current}}
                loc["current"] = {"time": current_hour.strftime("%Y-%m-%dT%H:%M"), "interval": 3600,
                                  **{v: _json_values(now_frame[v], 1.0 if v == "temperature_2m" else factor)[0]
                                     for v in current}}
            locations.append(loc)
        elapsed_ms = (time.perf_counter() - started) * 1000
        for loc in locations:
            loc["generationtime_ms"] = round(elapsed_ms, 3)
        return JSONResponse(locations if len(locations) > 1 else locations[0])

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "stations": len(model.stations)}

    return app


def main() -> None:
    serve(create_app(), int(os.environ.get("PORT") or STANDIN_PORTS["weather"]))


if __name__ == "__main__":
    main()
