"""The Open-Meteo-style weather stand-in and the forecast client, end to end over HTTP
(real uvicorn servers on 127.0.0.1), then through the risk pipeline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime

import httpx
import numpy as np
import pandas as pd
import pytest
from risk_builders import TZ, X0, Y0, fragments_frame, lonlat

from grid_platform.http_retry import ServiceRetry
from grid_platform.risk.fragments import prepare_fragments
from grid_platform.risk.matching import grid_points
from grid_platform.risk.pipeline import run_risk
from grid_platform.settings import PROJECT_ROOT
from grid_platform.standins.faults import FaultConfig
from grid_platform.standins.server import running
from grid_platform.standins.weather import create_app
from grid_platform.weather.openmeteo import WeatherApiError, fetch_forecast

NOW = datetime(2026, 7, 14, 10, 30, tzinfo=UTC)
FAST = ServiceRetry(attempts=4, backoff_s=0.01, max_backoff_s=0.05, timeout_s=5.0)


@pytest.fixture(scope="module")
def app(try_dir):
    return create_app(try_dir, clock=lambda: NOW)


@pytest.fixture(scope="module")
def url(app):
    with running(app) as base:
        yield base


def points(n: int = 3) -> pd.DataFrame:
    coords = [lonlat(X0 + 3000 * i, Y0) for i in range(n)] + [(11.07, 47.49)]
    return pd.DataFrame({"point_id": [f"p{i}" for i in range(len(coords))],
                         "lon": [c[0] for c in coords], "lat": [c[1] for c in coords]})


def test_forecast_shape_units_and_determinism(url):
    params = {"latitude": "47.05,47.10", "longitude": "8.30,8.35", "hourly": "wind_speed_10m,wind_gusts_10m,temperature_2m",
              "timezone": "UTC", "wind_speed_unit": "ms", "forecast_days": "3", "past_days": "1"}
    first = httpx.get(f"{url}/v1/forecast", params=params).json()
    again = httpx.get(f"{url}/v1/forecast", params=params).json()
    assert isinstance(first, list) and len(first) == 2
    loc = first[0]
    assert loc["hourly_units"] == {"time": "iso8601", "wind_speed_10m": "m/s", "wind_gusts_10m": "m/s",
                                   "temperature_2m": "°C"}
    assert loc["hourly"]["time"][0] == "2026-07-13T00:00" and len(loc["hourly"]["time"]) == 96
    assert loc["utc_offset_seconds"] == 0 and isinstance(loc["elevation"], float)
    for a, b in zip(first, again):
        a.pop("generationtime_ms"), b.pop("generationtime_ms")
    assert first == again
    gust, speed = np.array(loc["hourly"]["wind_gusts_10m"]), np.array(loc["hourly"]["wind_speed_10m"])
    assert (gust >= speed).all() and 0 <= speed.min() and speed.max() < 40
    assert 5 < min(loc["hourly"]["temperature_2m"]) and max(loc["hourly"]["temperature_2m"]) < 40
    # Open-Meteo's default unit is km/h; a single location answers with an object.
    single = httpx.get(f"{url}/v1/forecast", params={**params, "latitude": "47.05", "longitude": "8.30",
                                                     "wind_speed_unit": "kmh"}).json()
    assert single["hourly_units"]["wind_speed_10m"] == "km/h"
    assert single["hourly"]["wind_speed_10m"][5] == pytest.approx(loc["hourly"]["wind_speed_10m"][5] * 3.6, abs=0.06)
    current = httpx.get(f"{url}/v1/forecast", params={"latitude": "47.05", "longitude": "8.30",
                                                      "current": "temperature_2m", "wind_speed_unit": "ms"}).json()
    assert current["current"]["time"] == "2026-07-14T10:00" and current["current"]["interval"] == 3600


def test_bad_requests_answer_400_with_reason(url):
    for params in ({"latitude": "47", "longitude": "8,9"}, {"latitude": "95", "longitude": "8"},
                   {"latitude": "47", "longitude": "8", "hourly": "snowfall_height"},
                   {"latitude": "47", "longitude": "8", "timezone": "Europe/Zurich"},
                   {"latitude": "47", "longitude": "8", "forecast_days": "17"}):
        r = httpx.get(f"{url}/v1/forecast", params=params)
        assert r.status_code == 400 and r.json()["error"] is True and r.json()["reason"]


def test_client_fetches_many_points_in_chunks(url):
    pts = points()
    hourly = fetch_forecast(url, pts, chunk_size=2, retry=FAST)
    assert set(hourly["point_id"]) == set(pts["point_id"])
    per_point = hourly.groupby("point_id")["ts_utc"].agg(["min", "max", "size"])
    assert (per_point["size"] == 96).all()
    assert (per_point["min"] == pd.Timestamp("2026-07-13", tz="UTC")).all()
    assert hourly["source"].unique().tolist() == ["open-meteo:best_match"] and not hourly["gust_derived"].any()
    # The stand-in places a point at Garmisch (719 m station) in the mid band, Lucerne points lower.
    elevation = hourly.groupby("point_id")["elevation_m"].first()
    assert 500 <= elevation["p3"] < 1000


def test_client_retries_injected_faults(try_dir):
    faults = FaultConfig(error_rate=0.2, malformed_rate=0.1, truncated_rate=0.1, schema_drift_rate=0.05, seed=3)
    with running(create_app(try_dir, clock=lambda: NOW, faults=faults)) as base:
        hourly = fetch_forecast(base, points(), chunk_size=1, retry=ServiceRetry(attempts=8, backoff_s=0.01,
                                                                                 max_backoff_s=0.02))
        stats = httpx.get(f"{base}/_standin/stats").json()
    assert hourly.groupby("point_id").size().tolist() == [96] * 4
    outcomes = stats["by_outcome"]
    assert outcomes["ok"] == 4 and sum(v for k, v in outcomes.items() if k.startswith("fault")) >= 1
    # A 429 burst: the client waits as told and gets through.
    with running(create_app(try_dir, clock=lambda: NOW, faults=FaultConfig(burst_429=2, burst_reset_ms=10))) as base:
        assert len(fetch_forecast(base, points(1), retry=FAST)) == 2 * 96


def test_client_does_not_retry_client_errors_and_gives_up_clearly(url, try_dir):
    with pytest.raises(WeatherApiError, match="HTTP 400"):
        fetch_forecast(url, points(1), forecast_days=30, retry=FAST)
    with running(create_app(try_dir, clock=lambda: NOW, faults=FaultConfig(error_rate=1.0))) as base:
        with pytest.raises(WeatherApiError, match="gave up after 4 attempts"):
            fetch_forecast(base, points(1), retry=FAST)
        assert httpx.get(f"{base}/_standin/stats").json()["requests"] == 4


def test_standin_forecast_through_the_risk_pipeline(url, cfg):
    frags = fragments_frame([
        {"fragment_id": "o1", "coords": [(X0, Y0), (X0 + 2000, Y0)]},
        {"fragment_id": "c1", "coords": [(X0, Y0 + 500), (X0 + 900, Y0 + 500)], "line_name": "K1",
         "conductor_type": "underground_cable"},
    ])
    grid = grid_points(prepare_fragments(frags).geoms, 4000, cfg.forecast_max_distance_m)
    hourly = fetch_forecast(url, grid, retry=FAST)
    run = run_risk(frags, hourly, network_id="ckw", today=date(2026, 7, 14), now=NOW, local_tz=TZ, cfg=cfg)
    daily = run.fragment_risk_daily
    assert len(daily) == 6 and daily["risk_level"].notna().all()
    assert (daily["point_distance_m"] <= 5000).all()
    assert run.quality["weather_point_days_incomplete"] == 0
    assert set(run.trend["risk_vector"]) == {"wind", "heat"}


@pytest.mark.slow
def test_module_runs_as_a_server_on_port(try_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "GRID_TRY_DIR": str(try_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "grid_platform.standins.weather"], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert r.json() == {"status": "ok", "stations": 15}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
