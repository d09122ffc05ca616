"""Stand-in of the meter-data service (smart-meter consumption of community members), port 8105.

Serves the demo registry's consumption (``grid_platform.flexibility.participants``: real
SimBench load and PV profiles, deterministic for the registry seed) for any local date:

- ``GET /v1/meters/{device_id}/consumption?date=YYYY-MM-DD[&end_date=…][&resolution=15min|1h]``
- ``GET /v1/participants/{participant_id}/consumption?…`` (also for members without a device)
- ``GET /v1/communities/{community_id}/consumption?…``: every metered member, one row per
  device and interval (the bulk read of the Dagster assets)
- ``GET /v1/communities/{community_id}/exchange?…``: the community's consumption, PV
  production and net exchange (> 0: surplus), ``1h`` by default
- ``GET /health``

Dates are local (Europe/Zurich by default) and inclusive; a day has 92, 96 or 100
quarter-hours (23, 24 or 25 hours) and timestamps are UTC (``…Z``), interval starts. A span
over 31 days answers 400, an unknown id 404; errors are ``{"detail": …}``. Faults come from
the shared middleware on ``/v1/`` (``standins.faults``).

Run: ``python -m grid_platform.standins.meters`` (port ``$PORT`` or 8105); the registry is
``FLEX_COMMUNITY_ID`` / ``FLEX_REGISTRY_SIZE`` / ``FLEX_REGISTRY_SEED``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date
from typing import Any

import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response

from grid_platform.flexibility.config import load_flexibility_config
from grid_platform.flexibility.participants import (
    Participant,
    ParticipantRegistry,
    community_exchange,
    device_consumption,
    local_day_bounds,
)
from grid_platform.settings import STANDIN_PORTS
from grid_platform.standins.faults import FaultConfig, install_faults
from grid_platform.standins.server import serve

MAX_SPAN_DAYS = 31
RESOLUTIONS = ("15min", "1h")


class _BadRequest(ValueError):
    pass


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _error(status: int, detail: str) -> Response:
    return _json({"detail": detail}, status)


def _days(request: Request) -> tuple[date, date, str]:
    q = request.query_params
    try:
        first = date.fromisoformat(q.get("date", ""))
        last = date.fromisoformat(q["end_date"]) if q.get("end_date") else first
    except ValueError:
        raise _BadRequest("date and end_date must be YYYY-MM-DD") from None
    if last < first:
        raise _BadRequest("end_date must not be before date")
    if (last - first).days + 1 > MAX_SPAN_DAYS:
        raise _BadRequest(f"at most {MAX_SPAN_DAYS} days per request")
    resolution = q.get("resolution", "15min")
    if resolution not in RESOLUTIONS:
        raise _BadRequest(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    return first, last, resolution


def _stamp(ts: pd.Series) -> list[str]:
    return list(pd.to_datetime(ts, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


def create_app(registry: ParticipantRegistry | None = None, *, tz: str | None = None,
               faults: FaultConfig | None = None) -> FastAPI:
    config = load_flexibility_config()
    registry = registry or ParticipantRegistry.demo({config.community_id: config.registry_size},
                                                    config.registry_seed)
    zone = tz or config.local_timezone
    app = FastAPI(title="Meter data (stand-in)", version="1")
    install_faults(app, faults, data_prefixes=("/v1/",),
                   error_body=lambda status, url: {"detail": f"Error {status} (injected)", "url": url})

    def bounds(first: date, last: date):
        return local_day_bounds(first, zone)[0], local_day_bounds(last, zone)[1]

    def readings(members: list[Participant], request: Request, *, with_device: bool, **ids: Any) -> Response:
        try:
            first, last, resolution = _days(request)
        except _BadRequest as exc:
            return _error(400, str(exc))
        frame = device_consumption(members, *bounds(first, last), zone, resolution)
        rows: list[dict[str, Any]] = [
            {"ts": t, **({"device_id": d} if with_device else {}), "consumption_kwh": float(v)}
            for t, d, v in zip(_stamp(frame["ts"]), frame["device_id"], frame["consumption_kwh"])]
        return _json({**ids, "timezone": zone, "resolution": resolution, "unit": "kWh", "date": first.isoformat(),
                      "end_date": last.isoformat(), "readings": rows})

    @app.get("/v1/meters/{device_id}/consumption")
    def meter(device_id: str, request: Request) -> Response:
        member = registry.by_device(device_id)
        if member is None:
            return _error(404, f"unknown device {device_id!r}")
        return readings([member], request, with_device=False, device_id=device_id,
                        participant_id=member.participant_id, community_id=member.community_id)

    @app.get("/v1/participants/{participant_id}/consumption")
    def participant(participant_id: str, request: Request) -> Response:
        member = registry.by_participant(participant_id)
        if member is None:
            return _error(404, f"unknown participant {participant_id!r}")
        # A member without a smart meter is still served, as if metered (keyed by participant).
        metered = member if member.device_id else replace(member, device_id=member.participant_id)
        return readings([metered], request, with_device=False, device_id=member.device_id,
                        participant_id=participant_id, community_id=member.community_id)

    @app.get("/v1/communities/{community_id}/consumption")
    def community(community_id: str, request: Request) -> Response:
        members = registry.all_members(community_id)
        if not members:
            return _error(404, f"unknown community {community_id!r}")
        return readings(members, request, with_device=True, community_id=community_id)

    @app.get("/v1/communities/{community_id}/exchange")
    def exchange(community_id: str, request: Request) -> Response:
        members = registry.all_members(community_id)
        if not members:
            return _error(404, f"unknown community {community_id!r}")
        try:
            first, last, _ = _days(request)
        except _BadRequest as exc:
            return _error(400, str(exc))
        resolution = request.query_params.get("resolution", "1h")
        if resolution not in RESOLUTIONS:
            return _error(400, f"resolution must be one of {', '.join(RESOLUTIONS)}")
        frame = community_exchange(members, *bounds(first, last), zone, resolution)
        rows = [{"ts": t, "consumption_kwh": float(c), "production_kwh": float(p), "net_exchange_kwh": float(n)}
                for t, c, p, n in zip(_stamp(frame["ts"]), frame["consumption_kwh"], frame["production_kwh"],
                                      frame["net_exchange_kwh"])]
        return _json({"community_id": community_id, "timezone": zone, "resolution": resolution, "unit": "kWh",
                      "date": first.isoformat(), "end_date": last.isoformat(), "readings": rows})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "communities": registry.communities(0, 1000),
                "participants": len(registry.participants)}

    return app


def main() -> None:
    serve(create_app(), int(os.environ.get("PORT") or STANDIN_PORTS["meters"]))


if __name__ == "__main__":
    main()
