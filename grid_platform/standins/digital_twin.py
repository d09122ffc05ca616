"""Stand-in of the Digital-Twin values API (value fetchers), port 8102.

The CELINE Digital Twin exposes its data as *value fetchers* (alerts-and-access.md §8); this
stand-in serves the grid topology of demo networks that way:

- ``GET /values`` -> the fetchers ``[{id, description, limit, payload_schema}]``;
- ``GET /values/{fetcher_id}/describe`` -> one of them;
- ``GET /values/{fetcher_id}?network_id=…&limit=…&offset=…`` and
  ``POST /values/{fetcher_id}?limit=…&offset=…`` with the payload as JSON body
  -> ``{"items": [...], "limit": int, "offset": int, "count": len(items)}``;
- unknown fetcher -> 404, unknown network (entity resolution) -> 404, payload not valid
  against the fetcher's JSON Schema -> 422 with the validation messages, all as
  ``{"detail": ...}``; ``limit`` is 1..10000 (default 100), ``offset`` >= 0.

Fetchers (domain ``topology``): ``topology.networks`` (no payload) and, with payload
``{"network_id": str}``, ``topology.buses``, ``topology.lines``, ``topology.substations``,
``topology.transformers``, ``topology.switches``. Items use the DT's own vocabulary: ids
``B<n>``/``L<n>``/``T<n>``/``S<n>``/``SW<n>``, conductor ``kind`` (``cable``,
``overhead_line``), GeoJSON geometry objects in EPSG:4326 (``null`` for a line without its
own route), and switches that sit on a bus and name the element they connect it to.

The data are derived here from pandapower's example networks (``lv_schutterwald``,
``mv_oberrhein``) without any of the platform's topology code, so a mistake shared by the
client and the stand-in cannot hide from the tests. A network is loaded on first request.
Tests pass their own (possibly broken) networks to ``create_app(networks=...)``.
Faults come from the shared middleware (``standins.faults``) on ``/values``.

Run: ``python -m grid_platform.standins.digital_twin`` (port ``$PORT`` or 8102).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import jsonschema
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from grid_platform.settings import STANDIN_PORTS
from grid_platform.standins.faults import FaultConfig, install_faults
from grid_platform.standins.server import serve

DOMAIN = "topology"
TABLES = ("buses", "lines", "substations", "transformers", "switches")
DEFAULT_LIMIT, MAX_LIMIT = 100, 10_000
NETWORK_PAYLOAD = {
    "type": "object",
    "properties": {"network_id": {"type": "string", "minLength": 1}},
    "required": ["network_id"],
    "additionalProperties": False,
}
DESCRIPTIONS = {
    "networks": "Networks the Digital Twin holds, with title, CRS and declared service area.",
    "buses": "Buses (nodes) with nominal voltage and a GeoJSON Point.",
    "lines": "Lines between two buses with conductor kind, length and, where known, the route.",
    "substations": "Substations with a GeoJSON Point.",
    "transformers": "Transformers: substation, high- and low-voltage bus, ratings, in service.",
    "switches": "Switches: the bus they sit on and the element (bus, line, transformer) they connect.",
}
PANDAPOWER_KINDS = {"cs": "cable", "ol": "overhead_line"}
SWITCH_ELEMENTS = {"b": ("bus", "B"), "l": ("line", "L"), "t": ("transformer", "T")}


@dataclass(frozen=True)
class DtNetwork:
    """One network as the Digital Twin holds it: a title, a declared area and item lists."""

    title: str
    area_bbox: list[float] | None
    tables: Mapping[str, list[dict[str, Any]]]


def _point(geo: Any) -> dict[str, Any] | None:
    if not isinstance(geo, str) or not geo.strip():
        return None
    doc = json.loads(geo)
    return {"type": "Point", "coordinates": [float(v) for v in doc["coordinates"][:2]]}


def _route(geo: Any) -> dict[str, Any] | None:
    if not isinstance(geo, str) or not geo.strip():
        return None
    doc = json.loads(geo)
    if doc.get("type") != "LineString" or len(doc["coordinates"]) < 2:
        return None
    return {"type": "LineString", "coordinates": [[float(x), float(y)] for x, y, *_ in doc["coordinates"]]}


def _name(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def from_pandapower_net(net: Any, title: str, margin_deg: float = 0.01) -> DtNetwork:
    """The DT's view of a pandapower net. One substation per transformer, at its low-voltage bus."""
    buses = [
        {"bus_id": f"B{i}", "name": _name(r["name"]), "voltage_kv": float(r["vn_kv"]), "geometry": _point(r.get("geo"))}
        for i, r in net.bus.iterrows()
    ]
    lines = [
        {
            "line_id": f"L{i}",
            "name": _name(r["name"]),
            "from_bus": f"B{int(r['from_bus'])}",
            "to_bus": f"B{int(r['to_bus'])}",
            "kind": PANDAPOWER_KINDS.get(_name(r.get("type"))),
            "length_m": round(float(r["length_km"]) * 1000.0, 3),
            "in_service": bool(r["in_service"]),
            "geometry": _route(r.get("geo")),
        }
        for i, r in net.line.iterrows()
    ]
    position = {b["bus_id"]: b["geometry"] for b in buses}
    substations, transformers = [], []
    for i, r in net.trafo.iterrows():
        lv = f"B{int(r['lv_bus'])}"
        substations.append({"substation_id": f"S{i}", "name": _name(r["name"]) or f"S{i}", "geometry": position[lv]})
        transformers.append({
            "transformer_id": f"T{i}",
            "name": _name(r["name"]),
            "substation_id": f"S{i}",
            "hv_bus": f"B{int(r['hv_bus'])}",
            "lv_bus": lv,
            "hv_kv": float(r["vn_hv_kv"]),
            "lv_kv": float(r["vn_lv_kv"]),
            "in_service": bool(r["in_service"]),
        })
    switches = []
    for i, r in net.switch.iterrows():
        element_type, prefix = SWITCH_ELEMENTS[r["et"]]
        switches.append({
            "switch_id": f"SW{i}",
            "name": _name(r["name"]),
            "bus_id": f"B{int(r['bus'])}",
            "element_type": element_type,
            "element_id": f"{prefix}{int(r['element'])}",
            "closed": bool(r["closed"]),
        })
    points = [b["geometry"]["coordinates"] for b in buses if b["geometry"]]
    area = None
    if points:
        lons, lats = [p[0] for p in points], [p[1] for p in points]
        area = [round(min(lons) - margin_deg, 6), round(min(lats) - margin_deg, 6),
                round(max(lons) + margin_deg, 6), round(max(lats) + margin_deg, 6)]
    tables = {"buses": buses, "lines": lines, "substations": substations, "transformers": transformers,
              "switches": switches}
    return DtNetwork(title, area, tables)


def schutterwald() -> DtNetwork:
    import pandapower.networks as pn

    return from_pandapower_net(pn.lv_schutterwald(), "Schutterwald LV grid (0.4 kV, pandapower lv_schutterwald)")


def oberrhein() -> DtNetwork:
    import pandapower.networks as pn

    return from_pandapower_net(pn.mv_oberrhein(), "Oberrhein MV grid (20 kV, pandapower mv_oberrhein)")


# The DT's demo networks, by the DT's own network id.
NETWORKS: dict[str, Callable[[], DtNetwork]] = {"schutterwald": schutterwald, "oberrhein": oberrhein}


def _fetchers() -> dict[str, dict[str, Any]]:
    out = {f"{DOMAIN}.networks": {"description": DESCRIPTIONS["networks"], "limit": DEFAULT_LIMIT,
                                  "payload_schema": {"type": "object", "properties": {},
                                                     "additionalProperties": False}}}
    for table in TABLES:
        out[f"{DOMAIN}.{table}"] = {"description": DESCRIPTIONS[table], "limit": DEFAULT_LIMIT,
                                    "payload_schema": NETWORK_PAYLOAD}
    return out


def create_app(networks: Mapping[str, Callable[[], DtNetwork]] | None = None, *,
               faults: FaultConfig | None = None) -> FastAPI:
    """The stand-in app serving ``networks`` (DT network id -> loader; default: the demo networks)."""
    loaders = dict(NETWORKS if networks is None else networks)
    fetchers = _fetchers()
    loaded: dict[str, DtNetwork] = {}
    lock = threading.Lock()

    def network(network_id: str) -> DtNetwork | None:
        if network_id not in loaders:
            return None
        with lock:  # one load per network, however many requests arrive at once
            if network_id not in loaded:
                loaded[network_id] = loaders[network_id]()
            return loaded[network_id]

    app = FastAPI(title="Digital-Twin values API (stand-in)", version="1")
    install_faults(app, faults, data_prefixes=("/values",),
                   error_body=lambda status, url: {"detail": f"Error {status} (injected)"})

    def not_found(what: str) -> JSONResponse:
        return JSONResponse({"detail": f"{what} not found"}, status_code=404)

    def fetch(fetcher_id: str, payload: dict[str, Any], limit: int | None, offset: int | None) -> JSONResponse:
        spec = fetchers.get(fetcher_id)
        if spec is None:
            return not_found(f"Fetcher '{fetcher_id}'")
        payload = dict(payload)
        errors = sorted(jsonschema.Draft202012Validator(spec["payload_schema"]).iter_errors(payload),
                        key=lambda e: list(e.path))
        if errors:
            return JSONResponse({"detail": [e.message for e in errors]}, status_code=422)
        limit = spec["limit"] if limit is None else limit
        offset = offset or 0
        table = fetcher_id.removeprefix(f"{DOMAIN}.")
        if table == "networks":
            rows = [{"network_id": nid, "title": net.title, "crs": "EPSG:4326", "area_bbox": net.area_bbox}
                    for nid in sorted(loaders) if (net := network(nid)) is not None]
        else:
            net = network(payload["network_id"])
            if net is None:
                return not_found(f"Network '{payload['network_id']}'")
            rows = net.tables.get(table, [])
        items = rows[offset:offset + limit]
        return JSONResponse({"items": items, "limit": limit, "offset": offset, "count": len(items)})

    @app.get("/values")
    def list_values() -> list[dict[str, Any]]:
        return [{"id": fid, **spec} for fid, spec in fetchers.items()]

    @app.get("/values/{fetcher_id}/describe")
    def describe(fetcher_id: str) -> JSONResponse:
        if fetcher_id not in fetchers:
            return not_found(f"Fetcher '{fetcher_id}'")
        return JSONResponse({"id": fetcher_id, **fetchers[fetcher_id]})

    @app.get("/values/{fetcher_id}")
    def get_values(fetcher_id: str, request: Request,
                   limit: int | None = Query(default=None, ge=1, le=MAX_LIMIT),
                   offset: int | None = Query(default=None, ge=0)) -> JSONResponse:
        payload = {k: v for k, v in request.query_params.items() if k not in ("limit", "offset")}
        return fetch(fetcher_id, payload, limit, offset)

    @app.post("/values/{fetcher_id}")
    def post_values(fetcher_id: str, payload: Annotated[dict[str, Any] | None, Body()] = None,
                    limit: int | None = Query(default=None, ge=1, le=MAX_LIMIT),
                    offset: int | None = Query(default=None, ge=0)) -> JSONResponse:
        return fetch(fetcher_id, payload or {}, limit, offset)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "healthy", "networks": sorted(loaders)}

    return app


def main() -> None:
    serve(create_app(), int(os.environ.get("PORT") or STANDIN_PORTS["dt"]))


if __name__ == "__main__":
    main()
