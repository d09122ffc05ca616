"""pandapower and SimBench networks -> the common :class:`Network` model.

pandapower 3.x keeps geodata as GeoJSON strings in ``net.bus.geo`` / ``net.line.geo``
(WGS84). A line with its own LineString keeps it (``geometry_source='route'``); a line
without one gets the straight segment between its bus points (``'straight'``); a line with
neither raises :class:`MissingGeometryError` naming the line.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import shapely

from .model import (
    LINE_COLUMNS,
    NODE_COLUMNS,
    SUBSTATION_COLUMNS,
    SWITCH_COLUMNS,
    TRANSFORMER_COLUMNS,
    WGS84,
    MissingGeometryError,
    Network,
    TopologyError,
    bbox_from_points,
    frame,
)

# Declared service areas (EPSG:4326) of the demo networks, from their documented extents
# (data-sources.md §2, §3) padded by ~1 km, so geometry outside them is a data error.
OFFENBURG_AREA = (7.70, 48.30, 7.98, 48.50)
SIMBENCH_AREA = (5.80, 47.10, 15.20, 55.10)

# pandapower line type -> risk-model conductor_type
PANDAPOWER_LINE_TYPES = {"ol": "overhead_bare", "cs": "underground_cable"}
# Standard-type name markers, used only when ``type`` is missing.
_CABLE_RE = re.compile(r"NAYY|NA2XS|N2XS|NYY|NAYCWY|cable|kabel", re.IGNORECASE)
_OVERHEAD_RE = re.compile(r"AL1/|Al/St|ST1A|overhead|freileitung|\bOHL\b", re.IGNORECASE)


def conductor_from_name(text: str | None) -> str | None:
    """Conductor type from a type or equipment name, or None when the name says nothing."""
    if not text:
        return None
    if _CABLE_RE.search(text):
        return "underground_cable"
    if _OVERHEAD_RE.search(text):
        return "overhead_bare"
    return None


def _geo_column(series: pd.Series) -> np.ndarray:
    """Parse a pandapower ``geo`` column (GeoJSON text, or missing) into shapely geometries."""
    out = np.full(len(series), None, dtype=object)
    values = series.to_numpy(dtype=object)
    mask = np.array([isinstance(v, str) and v.strip() != "" for v in values], dtype=bool)
    if mask.any():
        out[mask] = shapely.from_geojson(values[mask].astype(str), on_invalid="ignore")
    return out


def _text(v) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or pd.isna(v) else str(v)


def from_pandapower(
    net,
    network_id: str,
    *,
    area_bbox: tuple[float, float, float, float] | None = None,
    source: str = "pandapower",
) -> Network:
    """Convert a pandapower (or SimBench) net. Ids: ``bus:<idx>``, ``line:<idx>``, ``trafo:<idx>``."""
    bus = net.bus
    bus_geom = _geo_column(bus["geo"]) if "geo" in bus.columns else np.full(len(bus), None, dtype=object)
    bus_ids = np.array([f"bus:{i}" for i in bus.index], dtype=object)
    bus_pos = dict(zip(bus.index, bus_geom))
    node_sub = (
        bus["substation"].map(_text) if "substation" in bus.columns else pd.Series(None, index=bus.index)
    )

    line = net.line
    route = _geo_column(line["geo"]) if "geo" in line.columns else np.full(len(line), None, dtype=object)
    geoms, gsrc = [], []
    for idx, name, fb, tb, r in zip(line.index, line["name"], line["from_bus"], line["to_bus"], route):
        if r is not None and r.geom_type == "LineString" and shapely.get_num_coordinates(r) >= 2:
            geoms.append(r)
            gsrc.append("route")
            continue
        a, b = bus_pos.get(fb), bus_pos.get(tb)
        if a is None or b is None:
            raise MissingGeometryError(
                f"network {network_id!r}: line {idx} ({name!r}) has no route and bus "
                f"{fb if a is None else tb} has no coordinates"
            )
        geoms.append(shapely.LineString([a.coords[0], b.coords[0]]))
        gsrc.append("straight")

    types = line["type"] if "type" in line.columns else pd.Series(None, index=line.index)
    std_types = line["std_type"] if "std_type" in line.columns else pd.Series(None, index=line.index)
    conductor, conductor_src = [], []
    for t, st in zip(types, std_types):
        if _text(t) in PANDAPOWER_LINE_TYPES:
            conductor.append(PANDAPOWER_LINE_TYPES[t])
            conductor_src.append("pandapower.type")
        elif (c := conductor_from_name(_text(st))) is not None:
            conductor.append(c)
            conductor_src.append("std_type_name")
        else:
            conductor.append(None)
            conductor_src.append("unknown")

    # Line-end switches (et='l'): an open one disconnects the line at that bus.
    sw = net.switch
    open_ends = set()
    if len(sw):
        ls = sw[(sw["et"] == "l") & ~sw["closed"].astype(bool)]
        open_ends = set(zip(ls["element"].astype(int), ls["bus"].astype(int)))
    from_closed = [(i, fb) not in open_ends for i, fb in zip(line.index, line["from_bus"])]
    to_closed = [(i, tb) not in open_ends for i, tb in zip(line.index, line["to_bus"])]
    vn = bus["vn_kv"]
    names = [_text(n) for n in line["name"]]
    lines = frame(
        {
            "line_id": [f"line:{i}" for i in line.index],
            "name": names,
            "line_name": names,
            "line_name_source": ["pandapower.line.name" if n is not None else "missing" for n in names],
            "from_node": [f"bus:{b}" for b in line["from_bus"]],
            "to_node": [f"bus:{b}" for b in line["to_bus"]],
            "from_closed": from_closed,
            "to_closed": to_closed,
            "in_service": line["in_service"].astype(bool).tolist(),
            "voltage_kv": vn.reindex(line["from_bus"]).to_numpy(dtype=float),
            "conductor_type": conductor,
            "conductor_type_source": conductor_src,
            "source_length_m": (line["length_km"].to_numpy(dtype=float) * 1000.0),
            "geometry": geoms,
            "geometry_source": gsrc,
        },
        LINE_COLUMNS,
        WGS84,
    )

    transformers, substations = _transformers_and_substations(net, bus_pos, node_sub)
    sub_of_bus = {}
    for hv, lv, sid in zip(transformers["hv_node"], transformers["lv_node"], transformers["substation_id"]):
        sub_of_bus.setdefault(lv, sid)
        sub_of_bus.setdefault(hv, sid)
    nodes = frame(
        {
            "node_id": bus_ids,
            "name": [_text(n) for n in bus["name"]],
            "voltage_kv": vn.to_numpy(dtype=float),
            "substation_id": [sub_of_bus.get(n) for n in bus_ids],
            "geometry": bus_geom,
        },
        NODE_COLUMNS,
        WGS84,
    )

    bb = sw[sw["et"] == "b"] if len(sw) else sw
    switches = frame(
        {
            "switch_id": [f"switch:{i}" for i in bb.index],
            "name": [_text(n) for n in bb["name"]] if len(bb) else [],
            "node_a": [f"bus:{b}" for b in bb["bus"]] if len(bb) else [],
            "node_b": [f"bus:{int(e)}" for e in bb["element"]] if len(bb) else [],
            "closed": bb["closed"].astype(bool).tolist() if len(bb) else [],
        },
        SWITCH_COLUMNS,
    )

    if area_bbox is None:
        area, area_source = bbox_from_points(bus_geom), "derived_from_bus_positions"
    else:
        area, area_source = tuple(area_bbox), "declared"
    return Network(
        network_id=network_id,
        nodes=nodes,
        lines=lines,
        substations=substations,
        transformers=transformers,
        switches=switches,
        area_bbox=area,
        area_source=area_source,
        source=source,
    )


def _transformers_and_substations(net, bus_pos: dict, node_sub: pd.Series):
    """Transformer rows (one per lower-voltage winding) and the substations holding them.

    SimBench names substations (``trafo.substation``); plain pandapower nets do not, so a
    substation is derived as the group of transformers sharing a bus, named after its first
    transformer (lowest index) and placed at that transformer's low-voltage bus.
    """
    rows = []  # (transformer_id, name, hv_bus, lv_bus, hv_kv, lv_kv, closed, named_substation)
    open_t = set()
    sw = net.switch
    if len(sw):
        ts = sw[(sw["et"] == "t") & ~sw["closed"].astype(bool)]
        open_t = set(ts["element"].astype(int))
    sub_col = "substation" if "substation" in net.trafo.columns else None
    for idx, r in net.trafo.iterrows():
        rows.append(
            (
                f"trafo:{idx}",
                _text(r["name"]),
                int(r["hv_bus"]),
                int(r["lv_bus"]),
                float(r["vn_hv_kv"]),
                float(r["vn_lv_kv"]),
                idx not in open_t,
                _text(r[sub_col]) if sub_col else None,
            )
        )
    if "trafo3w" in net and len(net.trafo3w):
        for idx, r in net.trafo3w.iterrows():
            sub = _text(r["substation"]) if "substation" in net.trafo3w.columns else None
            for side in ("mv", "lv"):
                rows.append(
                    (
                        f"trafo3w:{idx}:{side}",
                        _text(r["name"]),
                        int(r["hv_bus"]),
                        int(r[f"{side}_bus"]),
                        float(r["vn_hv_kv"]),
                        float(r[f"vn_{side}_kv"]),
                        bool(r["in_service"]),
                        sub,
                    )
                )
    # Group transformers into substations: explicit names first, else shared buses.
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for tid, _, hv, lv, *_rest in rows:
        parent[find(("t", tid))] = find(("b", hv))
        parent[find(("b", lv))] = find(("b", hv))
    groups: dict = {}
    for row in rows:
        groups.setdefault(find(("t", row[0])), []).append(row)
    sub_rows, sub_of_trafo = [], {}
    for members in groups.values():
        members.sort(key=lambda r: _trafo_sort_key(r[0]))
        first = members[0]
        named = next((m[7] for m in members if m[7]), None)
        sid = named or f"substation:{first[0]}"
        name = named or first[1] or first[0]
        for m in members:
            sub_of_trafo[m[0]] = sid
        pos = bus_pos.get(first[3]) or bus_pos.get(first[2])
        sub_rows.append((sid, name, sid, pos))
    # A named SimBench substation may span several groups: keep its first row.
    seen, uniq = set(), []
    for r in sorted(sub_rows, key=lambda r: r[0]):
        if r[0] not in seen:
            seen.add(r[0])
            uniq.append(r)
    substations = frame(
        {k: [r[i] for r in uniq] for i, k in enumerate(SUBSTATION_COLUMNS)}, SUBSTATION_COLUMNS, WGS84
    )
    transformers = frame(
        {
            "transformer_id": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "substation_id": [sub_of_trafo[r[0]] for r in rows],
            "hv_node": [f"bus:{r[2]}" for r in rows],
            "lv_node": [f"bus:{r[3]}" for r in rows],
            "hv_kv": [r[4] for r in rows],
            "lv_kv": [r[5] for r in rows],
            "closed": [r[6] for r in rows],
        },
        TRANSFORMER_COLUMNS,
    )
    return transformers, substations


def _trafo_sort_key(tid: str):
    kind, idx, *rest = tid.split(":")
    return (kind, int(idx), rest)


def mv_oberrhein_network(network_id: str = "oberrhein_mv") -> Network:
    """pandapower ``mv_oberrhein(include_substations=True)``: 20 kV with 141 MV/LV substations."""
    import pandapower.networks as pn

    return from_pandapower(
        pn.mv_oberrhein(include_substations=True),
        network_id,
        area_bbox=OFFENBURG_AREA,
        source="pandapower.networks.mv_oberrhein",
    )


def lv_schutterwald_network(network_id: str = "schutterwald_lv") -> Network:
    """pandapower ``lv_schutterwald()``: 0.4 kV, 14 MV/LV substations, 3 000 cable lines."""
    import pandapower.networks as pn

    return from_pandapower(
        pn.lv_schutterwald(),
        network_id,
        area_bbox=OFFENBURG_AREA,
        source="pandapower.networks.lv_schutterwald",
    )


DEFAULT_SIMBENCH_CODE = "1-MV-rural--0-sw"


def simbench_network(code: str = DEFAULT_SIMBENCH_CODE, network_id: str | None = None) -> Network:
    """Any SimBench code (``simbench.collect_all_simbench_codes()``); bus positions only."""
    import simbench

    if not code:
        raise TopologyError("empty SimBench code")
    net = simbench.get_simbench_net(code)
    nid = network_id or "simbench_" + re.sub(r"[^0-9A-Za-z]+", "_", code).strip("_").lower()
    return from_pandapower(net, nid, area_bbox=SIMBENCH_AREA, source=f"simbench:{code}")
