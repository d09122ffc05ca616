"""Digital-Twin values API -> the common :class:`Network` model.

The Digital Twin serves its topology as value fetchers (alerts-and-access.md §8):
``GET {DT_API_URL}/values/{fetcher_id}?network_id=…&limit=…&offset=…`` answers
``{"items", "limit", "offset", "count"}`` with ``count = len(items)`` (not a total), so the
client pages until a page comes back short. Fetchers: ``topology.networks`` (title, CRS,
declared area) and ``topology.buses | lines | substations | transformers | switches``.

Transient failures are retried with exponential backoff (``grid_platform.http_retry``):
timeouts and refused connections, HTTP 429 and 5xx, bodies that are not JSON or not an
envelope (a gateway page, a truncated answer). Other 4xx raise at once with the DT's
``detail``. Items are then validated as a whole before anything is built: a missing or
mistyped field, missing or invalid coordinates, a duplicate id or a reference to an object
the DT does not list raises a :class:`DigitalTwinPayloadError` naming the fetcher, the
object and the field.

Mapping to the model: a bus is a node (its Point required); a line keeps its route
(``geometry_source='route'``) or, without one, runs straight between its buses
(``'straight'``); ``kind`` gives the conductor type; an open switch on a line end opens that
end, one on a transformer takes the transformer out, one between two buses is a node-to-node
switch. A node's substation is that of a transformer it connects (low-voltage side first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import shapely

from grid_platform import http_retry
from grid_platform.http_retry import MalformedBody, ServiceRetry

from .model import (
    LINE_COLUMNS,
    NODE_COLUMNS,
    SUBSTATION_COLUMNS,
    SWITCH_COLUMNS,
    TRANSFORMER_COLUMNS,
    WGS84,
    Network,
    TopologyError,
    bbox_from_points,
    frame,
)

FETCHER_DOMAIN = "topology"
TABLES = ("buses", "lines", "substations", "transformers", "switches")
ID_FIELD = {"buses": "bus_id", "lines": "line_id", "substations": "substation_id",
            "transformers": "transformer_id", "switches": "switch_id"}
OBJECT = {"buses": "bus", "lines": "line", "substations": "substation", "transformers": "transformer",
          "switches": "switch"}
# DT conductor kind -> risk-model conductor_type
CONDUCTOR_KINDS = {"cable": "underground_cable", "overhead_line": "overhead_bare",
                   "insulated_overhead_line": "overhead_insulated"}
SWITCH_ELEMENTS = ("bus", "line", "transformer")


class DigitalTwinError(TopologyError):
    """The Digital Twin cannot provide the network."""


class DigitalTwinUnavailable(DigitalTwinError):
    """The DT did not answer usefully (unreachable, failing after retries, or refusing the request)."""


class DigitalTwinPayloadError(DigitalTwinError):
    """The DT answered, but an item is malformed; the message names the object and the field."""


class DtDuplicateId(DigitalTwinPayloadError):
    pass


class DtDanglingReference(DigitalTwinPayloadError):
    pass


class DtMissingCoordinates(DigitalTwinPayloadError):
    pass


DT_RETRY = ServiceRetry(timeout_s=30.0)  # the DT may load a network on first request


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]


class DigitalTwinClient(http_retry.OwnsHttpClient):
    """Pages through the DT's value fetchers with retries (one ``httpx.Client`` per instance)."""

    def __init__(self, base_url: str, *, retry: ServiceRetry = DT_RETRY, page_size: int = 5000,
                 client: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry, self.page_size, self.sleep = retry, page_size, sleep
        self._policy = retry.policy()
        self._use_http(client)

    def _page(self, fetcher_id: str, payload: dict[str, Any], limit: int, offset: int) -> list:
        url = f"{self.base_url}/values/{fetcher_id}"

        def items(response: httpx.Response) -> list:
            if response.status_code >= 400:
                raise DigitalTwinUnavailable(
                    f"Digital Twin {url} refused {payload or 'the request'}: "
                    f"HTTP {response.status_code}: {_detail(response)}")
            try:
                body = response.json()
            except ValueError as exc:
                raise MalformedBody(f"not JSON: {exc}") from exc
            if not (isinstance(body, dict) and isinstance(body.get("items"), list)
                    and body.get("count") == len(body["items"]) and body.get("offset") == offset):
                raise MalformedBody("not a value-fetcher envelope {items, limit, offset, count}")
            return body["items"]

        try:
            return http_retry.call(self._http, "GET", url, self._policy, read=items, sleep=self.sleep,
                                   params={**payload, "limit": limit, "offset": offset}).value
        except http_retry.RetriesExhausted as exc:
            raise DigitalTwinUnavailable(
                f"Digital Twin {url} unreachable or failing: gave up after {self.retry.attempts} attempts; "
                f"last error: {exc.last.detail}") from exc

    def fetch_all(self, fetcher_id: str, payload: dict[str, Any] | None = None) -> list:
        """Every item of a fetcher (pages of ``page_size`` until a short page)."""
        items: list = []
        while True:
            page = self._page(fetcher_id, payload or {}, self.page_size, len(items))
            items.extend(page)
            if len(page) < self.page_size:
                return items

    def networks(self) -> list[dict[str, Any]]:
        records = self.fetch_all(f"{FETCHER_DOMAIN}.networks")
        for i, r in enumerate(records):
            if not isinstance(r, dict) or not isinstance(r.get("network_id"), str):
                raise DigitalTwinPayloadError(f"{FETCHER_DOMAIN}.networks item #{i}: no string network_id")
        return records

    def tables(self, dt_network: str) -> dict[str, list]:
        return {t: self.fetch_all(f"{FETCHER_DOMAIN}.{t}", {"network_id": dt_network}) for t in TABLES}


# ---------------------------------------------------------------------------------------------
# Validation: every item checked before anything is built, errors name the object.


class _Items:
    """The items of one fetcher, indexed by id, with field accessors that name the object."""

    def __init__(self, table: str, items: list) -> None:
        self.table, self.fetcher = table, f"{FETCHER_DOMAIN}.{table}"
        self.items: list[dict[str, Any]] = []
        self.index: dict[str, int] = {}
        key = ID_FIELD[table]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise DigitalTwinPayloadError(f"{self.fetcher} item #{i} is not an object")
            oid = item.get(key)
            if not isinstance(oid, str) or not oid:
                raise DigitalTwinPayloadError(f"{self.fetcher} item #{i}: {key} missing or not a non-empty string")
            if oid in self.index:
                raise DtDuplicateId(f"{self.fetcher}: duplicate {key} {oid!r} (items #{self.index[oid]} and #{i})")
            self.index[oid] = i
            self.items.append(item)

    def name(self, item: dict[str, Any]) -> str:
        return f"{OBJECT[self.table]} {item[ID_FIELD[self.table]]!r}"

    def bad(self, item: dict[str, Any], key: str, what: str) -> DigitalTwinPayloadError:
        return DigitalTwinPayloadError(f"{self.fetcher}: {self.name(item)}: {key} {what}, got {item.get(key)!r}")

    def text(self, item: dict[str, Any], key: str, *, required: bool = False) -> str | None:
        value = item.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.bad(item, key, "must be a non-empty string")
        return value

    def number(self, item: dict[str, Any], key: str, *, required: bool = False) -> float | None:
        value = item.get(key)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.bad(item, key, "must be a finite number")
        return float(value)

    def flag(self, item: dict[str, Any], key: str, default: bool) -> bool:
        value = item.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.bad(item, key, "must be true or false")
        return value

    def ref(self, item: dict[str, Any], key: str, target: _Items, *, required: bool = True) -> str | None:
        value = self.text(item, key, required=required)
        if value is not None and value not in target.index:
            raise DtDanglingReference(
                f"{self.fetcher}: {self.name(item)}: {key} refers to {OBJECT[target.table]} {value!r}, "
                f"which {target.fetcher} does not list")
        return value

    def geometry(self, item: dict[str, Any], kind: str, *, required: bool) -> shapely.Geometry | None:
        geo = item.get("geometry")
        if geo is None:
            if required:
                raise DtMissingCoordinates(f"{self.fetcher}: {self.name(item)} has no coordinates (geometry is null)")
            return None
        coords = geo.get("coordinates") if isinstance(geo, dict) else None
        if not isinstance(geo, dict) or geo.get("type") != kind:
            raise self.bad(item, "geometry", f"must be a GeoJSON {kind}")
        positions = [coords] if kind == "Point" else coords
        if not isinstance(positions, list) or len(positions) < (1 if kind == "Point" else 2):
            raise DtMissingCoordinates(f"{self.fetcher}: {self.name(item)}: {kind} without enough coordinates, "
                                       f"got {coords!r}")
        for p in positions:
            if not (isinstance(p, list) and len(p) in (2, 3)
                    and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in p)
                    and -180 <= p[0] <= 180 and -90 <= p[1] <= 90):
                raise DtMissingCoordinates(f"{self.fetcher}: {self.name(item)}: invalid position {p!r} "
                                           f"(expected [lon, lat] in EPSG:4326)")
        xy = [(float(p[0]), float(p[1])) for p in positions]
        return shapely.Point(xy[0]) if kind == "Point" else shapely.LineString(xy)


def _area(record: dict[str, Any] | None, nodes: np.ndarray, dt_network: str):
    bbox = (record or {}).get("area_bbox")
    if bbox is None:
        return bbox_from_points(nodes), "derived_from_bus_positions"
    if not (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
            and bbox[0] < bbox[2] and bbox[1] < bbox[3]):
        raise DigitalTwinPayloadError(f"{FETCHER_DOMAIN}.networks: network {dt_network!r}: area_bbox must be "
                                      f"[lon_min, lat_min, lon_max, lat_max], got {bbox!r}")
    return tuple(float(v) for v in bbox), "declared"


def network_from_tables(tables: dict[str, list], network_id: str, *, record: dict[str, Any] | None = None,
                        source: str = "digital_twin") -> Network:
    """Validate the DT's items and convert them (see the module doc). ``record``: the DT's network entry."""
    dt_network = (record or {}).get("network_id", network_id)
    t = {name: _Items(name, tables.get(name) or []) for name in TABLES}
    buses, lines, subs, trafos, switches = (t[n] for n in TABLES)
    if not buses.items:
        raise DigitalTwinPayloadError(f"{buses.fetcher}: network {dt_network!r} has no buses")

    bus_geom = np.array([buses.geometry(b, "Point", required=True) for b in buses.items], dtype=object)
    bus_kv = {b["bus_id"]: buses.number(b, "voltage_kv", required=True) for b in buses.items}
    bus_pos = dict(zip((b["bus_id"] for b in buses.items), bus_geom))
    for b in buses.items:
        buses.text(b, "name")

    sub_rows = []
    for s in subs.items:
        sub_rows.append((s["substation_id"], subs.text(s, "name") or s["substation_id"], s["substation_id"],
                         subs.geometry(s, "Point", required=False)))

    open_trafos = set()
    open_ends: set[tuple[str, str]] = set()
    switch_rows = []
    for s in switches.items:
        bus = switches.ref(s, "bus_id", buses)
        element_type = s.get("element_type")
        if element_type not in SWITCH_ELEMENTS:
            raise switches.bad(s, "element_type", f"must be one of {SWITCH_ELEMENTS}")
        target = {"bus": buses, "line": lines, "transformer": trafos}[element_type]
        element = switches.ref(s, "element_id", target)
        closed = switches.flag(s, "closed", True)
        if element_type == "bus":
            switch_rows.append((s["switch_id"], switches.text(s, "name"), bus, element, closed))
            continue
        item = target.items[target.index[element]]
        ends = (item.get("from_bus"), item.get("to_bus")) if element_type == "line" else (
            item.get("hv_bus"), item.get("lv_bus"))
        if bus not in ends:
            raise DtDanglingReference(f"{switches.fetcher}: {switches.name(s)} sits on bus {bus!r}, which is not an "
                                      f"end of {target.name(item)} ({ends[0]!r}, {ends[1]!r})")
        if not closed and element_type == "line":
            open_ends.add((element, bus))
        elif not closed:
            open_trafos.add(element)

    trafo_rows = []
    sub_of_bus: dict[str, str] = {}
    for tr in trafos.items:
        sid = trafos.ref(tr, "substation_id", subs)
        hv, lv = trafos.ref(tr, "hv_bus", buses), trafos.ref(tr, "lv_bus", buses)
        hv_kv = trafos.number(tr, "hv_kv")
        lv_kv = trafos.number(tr, "lv_kv")
        closed = trafos.flag(tr, "in_service", True) and tr["transformer_id"] not in open_trafos
        trafo_rows.append((tr["transformer_id"], trafos.text(tr, "name"), sid, hv, lv,
                           bus_kv[hv] if hv_kv is None else hv_kv, bus_kv[lv] if lv_kv is None else lv_kv, closed))
        sub_of_bus.setdefault(lv, sid)
        sub_of_bus.setdefault(hv, sid)

    line_rows = []
    for ln in lines.items:
        fb, tb = lines.ref(ln, "from_bus", buses), lines.ref(ln, "to_bus", buses)
        name = lines.text(ln, "name")
        kind = ln.get("kind")
        if kind is not None and kind not in CONDUCTOR_KINDS:
            raise lines.bad(ln, "kind", f"must be one of {sorted(CONDUCTOR_KINDS)} or null")
        route = lines.geometry(ln, "LineString", required=False)
        if route is None:
            route, gsrc = shapely.LineString([bus_pos[fb].coords[0], bus_pos[tb].coords[0]]), "straight"
        else:
            gsrc = "route"
        lid = ln["line_id"]
        length = lines.number(ln, "length_m")
        line_rows.append({
            "line_id": lid, "name": name, "line_name": name,
            "line_name_source": "dt.line.name" if name is not None else "missing",
            "from_node": fb, "to_node": tb,
            "from_closed": (lid, fb) not in open_ends, "to_closed": (lid, tb) not in open_ends,
            "in_service": lines.flag(ln, "in_service", True),
            "voltage_kv": bus_kv[fb],
            "conductor_type": CONDUCTOR_KINDS.get(kind),
            "conductor_type_source": "dt.line.kind" if kind is not None else "unknown",
            "source_length_m": np.nan if length is None else length,
            "geometry": route, "geometry_source": gsrc,
        })

    def columns(rows: list, names: list[str]) -> dict[str, list]:
        return {c: [r[i] for r in rows] for i, c in enumerate(names)}

    node_ids = list(buses.index)
    nodes = frame({"node_id": node_ids, "name": [b.get("name") for b in buses.items],
                   "voltage_kv": [bus_kv[n] for n in node_ids], "substation_id": [sub_of_bus.get(n) for n in node_ids],
                   "geometry": bus_geom}, NODE_COLUMNS, WGS84)
    area, area_source = _area(record, bus_geom, dt_network)
    return Network(
        network_id=network_id,
        nodes=nodes,
        lines=frame({c: [r[c] for r in line_rows] for c in LINE_COLUMNS}, LINE_COLUMNS, WGS84),
        substations=frame(columns(sub_rows, SUBSTATION_COLUMNS), SUBSTATION_COLUMNS, WGS84),
        transformers=frame(columns(trafo_rows, TRANSFORMER_COLUMNS), TRANSFORMER_COLUMNS),
        switches=frame(columns(switch_rows, SWITCH_COLUMNS), SWITCH_COLUMNS),
        area_bbox=area,
        area_source=area_source,
        source=source,
        notes={"dt_network": dt_network},
    )


def digital_twin_network(base_url: str, dt_network: str, network_id: str | None = None, *,
                         retry: ServiceRetry = DT_RETRY, page_size: int = 5000) -> Network:
    """The network ``dt_network`` of the Digital Twin at ``base_url``, as platform network ``network_id``."""
    with DigitalTwinClient(base_url, retry=retry, page_size=page_size) as dt:
        records = {r["network_id"]: r for r in dt.networks()}
        if dt_network not in records:
            raise DigitalTwinError(f"Digital Twin {base_url} has no network {dt_network!r} "
                                   f"(it holds {sorted(records)})")
        tables = dt.tables(dt_network)
    return network_from_tables(tables, network_id or dt_network, record=records[dt_network],
                               source=f"digital_twin:{base_url}#{dt_network}")


def dt_holds(base_url: str, dt_network: str, timeout_s: float = 5.0) -> bool:
    """Whether the DT answers now and lists ``dt_network`` (one attempt: a probe, not a load)."""
    retry = ServiceRetry(attempts=1, timeout_s=timeout_s)
    try:
        with DigitalTwinClient(base_url, retry=retry) as dt:
            return any(r["network_id"] == dt_network for r in dt.networks())
    except DigitalTwinError:
        return False
