"""CIM/CGMES 2.4.15 (EQ, TP, GL, DL; SSH/SV only for switch and terminal states) -> :class:`Network`.

The XML is read with ``xml.etree.ElementTree.iterparse`` one top-level RDF object at a
time, clearing each after use, so memory grows with the objects kept (lines, terminals,
nodes, positions), never with the document. Inputs are XML files, ``.zip`` archives of
them, or folders holding either; all files of one model are read together (add the
boundary set, e.g. SmallGrid's Boundary zip, when the model references it).

Identifiers: ``rdf:ID="_x"``, ``rdf:about="#_x"`` and ``rdf:resource="#_x"`` all name mRID
``x``. Malformed input raises a :class:`CimError` subclass naming the object and file.

Geometry per ACLineSegment, first that exists: its GL Location (PositionPoints in
``sequenceNumber`` order, ``'gl'``); the straight segment between its end nodes' positions
(``'straight'``; a node is placed at its Substation's GL position, else at a point-located
equipment attached to it); its DL DiagramObject points (``'schematic'``: diagram, not
geographic, coordinates). Otherwise :class:`CimMissingCoordinates`.

Conductor type: from the segment name (cable/overhead markers), else from the shunt
susceptance per km (``bch / (2π·50 Hz) / length`` above 50 nF/km is a cable: cables carry
150–400 nF/km, overhead lines 8–15), else the documented default ``overhead_bare``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import pyproj
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
from .pandapower_source import conductor_from_name

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
CIM_NAMESPACES = {
    "http://iec.ch/TC57/2009/CIM-schema-cim14#": "cim14",
    "http://iec.ch/TC57/2010/CIM-schema-cim15#": "cim15",
    "http://iec.ch/TC57/2013/CIM-schema-cim16#": "cim16",  # CGMES 2.4.15
    "http://iec.ch/TC57/CIM100#": "cim100",  # CGMES 3.0
}
_CIM_LIKE = re.compile(r"iec\.ch/TC57/.*CIM", re.IGNORECASE)
_HEADER_LIKE = re.compile(r"61970-552|ModelDescription|DifferenceModel", re.IGNORECASE)
_EXTENSION_LIKE = re.compile(r"entsoe\.eu", re.IGNORECASE)
CABLE_MIN_NF_PER_KM = 50.0
DEFAULT_CONDUCTOR = "overhead_bare"

SWITCH_CLASSES = {
    "Switch",
    "Breaker",
    "Disconnector",
    "LoadBreakSwitch",
    "Fuse",
    "Jumper",
    "GroundDisconnector",
    "ProtectedSwitch",
    "Recloser",
    "Sectionaliser",
    "DisconnectingCircuitBreaker",
}
KEPT_CLASSES = {
    "ACLineSegment",
    "Line",
    "Terminal",
    "ConnectivityNode",
    "TopologicalNode",
    "VoltageLevel",
    "BaseVoltage",
    "Substation",
    "Bay",
    "PowerTransformer",
    "PowerTransformerEnd",
    "Location",
    "CoordinateSystem",
    "PositionPoint",
    "DiagramObject",
    "DiagramObjectPoint",
} | SWITCH_CLASSES

# References followed when building the network, checked for dangling targets.
CHECKED_REFS = {
    "Terminal": ("Terminal.ConductingEquipment", "Terminal.ConnectivityNode", "Terminal.TopologicalNode"),
    "ConnectivityNode": ("ConnectivityNode.ConnectivityNodeContainer",),
    "TopologicalNode": ("TopologicalNode.BaseVoltage",),
    "VoltageLevel": ("VoltageLevel.Substation", "VoltageLevel.BaseVoltage"),
    "Bay": ("Bay.VoltageLevel",),
    "ACLineSegment": ("ConductingEquipment.BaseVoltage", "Equipment.EquipmentContainer"),
    "PowerTransformerEnd": ("PowerTransformerEnd.PowerTransformer", "TransformerEnd.Terminal"),
    "Location": ("Location.PowerSystemResources", "Location.CoordinateSystem"),
    "PositionPoint": ("PositionPoint.Location",),
    "DiagramObject": ("DiagramObject.IdentifiedObject",),
    "DiagramObjectPoint": ("DiagramObjectPoint.DiagramObject",),
}


class CimError(TopologyError):
    """Malformed or inconsistent CIM input; ``object_id`` names the offending object."""

    def __init__(self, message: str, object_id: str | None = None, source: str | None = None):
        super().__init__(message)
        self.object_id = object_id
        self.source = source


class CimSyntaxError(CimError):
    """Truncated or otherwise malformed XML."""


class CimNamespaceError(CimError):
    """Unknown or wrong CIM namespace, or several CIM versions mixed in one model."""


class CimDanglingReference(CimError):
    """A followed reference names an object present in none of the files."""


class CimDuplicateMrid(CimError):
    """The same mRID is defined (``rdf:ID``) twice."""


class CimStructureError(CimError):
    """An object lacks what the model needs (e.g. an ACLineSegment without two terminals)."""


class CimMissingCoordinates(CimError, MissingGeometryError):
    """An ACLineSegment without GL location, positioned end nodes or diagram layout."""


def _mrid(ref: str) -> str:
    ref = ref.strip()
    ref = ref.removeprefix("#")
    if ref.lower().startswith("urn:uuid:"):
        ref = ref[9:]
    return ref.removeprefix("_")


class _Store:
    """Objects kept from the stream, merged across profiles by mRID."""

    def __init__(self) -> None:
        self.cls: dict[str, str] = {}  # mRID -> class (from rdf:ID or rdf:about)
        self.defined_in: dict[str, str] = {}  # mRID -> file where rdf:ID defined it
        self.props: dict[str, dict[str, str]] = {}
        self.by_class: dict[str, list[str]] = defaultdict(list)
        self.anonymous: list[tuple[str, dict[str, str], str]] = []  # points without an id
        self.versions: dict[str, str] = {}  # CIM version -> first file using it

    def add(self, elem: ET.Element, label: str) -> None:
        tag = elem.tag
        if not tag.startswith("{"):
            raise CimNamespaceError(
                f"{label}: element <{tag}> has no namespace (not CIM RDF/XML)", source=label
            )
        ns, local = tag[1:].split("}", 1)
        if _HEADER_LIKE.search(ns):
            return
        if ns in CIM_NAMESPACES:
            self.versions.setdefault(CIM_NAMESPACES[ns], label)
        elif _CIM_LIKE.search(ns):
            raise CimNamespaceError(
                f"{label}: unknown CIM namespace {ns!r} on <{local}>; supported: {sorted(CIM_NAMESPACES)}",
                source=label,
            )
        elif not _EXTENSION_LIKE.search(ns):
            raise CimNamespaceError(
                f"{label}: <{local}> is in namespace {ns!r}, which is not CIM", source=label
            )
        rid, about = elem.get(f"{{{RDF}}}ID"), elem.get(f"{{{RDF}}}about")
        props = None
        if local in KEPT_CLASSES:
            props = {}
            for child in elem:
                key = child.tag.rsplit("}", 1)[-1]
                res = child.get(f"{{{RDF}}}resource")
                props[key] = (
                    _mrid(res)
                    if res is not None and res.startswith("#")
                    else (res if res is not None else (child.text or "").strip())
                )
        if rid is not None:
            mrid = _mrid(rid)
            if mrid in self.defined_in:
                raise CimDuplicateMrid(
                    f"duplicate mRID {mrid!r}: {local} in {label} and "
                    f"{self.cls[mrid]} in {self.defined_in[mrid]}",
                    object_id=mrid,
                    source=label,
                )
            self.defined_in[mrid] = label
        elif about is not None:
            mrid = _mrid(about)
        else:
            if props is not None:
                self.anonymous.append((local, props, label))
            return
        if mrid not in self.cls:
            self.cls[mrid] = local
            if props is not None:
                self.by_class[local].append(mrid)
        if props is not None:
            self.props.setdefault(mrid, {}).update(props)


@contextmanager
def _open_member(path: Path, member: str | None) -> Iterator[IO[bytes]]:
    if member is None:
        with path.open("rb") as f:
            yield f
    else:
        with zipfile.ZipFile(path) as z, z.open(member) as f:
            yield f


def _sources(paths: Iterable[str | Path]) -> list[tuple[Path, str | None, str]]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(_sources(sorted(q for q in p.iterdir() if q.suffix.lower() in (".xml", ".zip"))))
        elif p.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(p) as z:
                    names = sorted(n for n in z.namelist() if n.lower().endswith(".xml"))
            except zipfile.BadZipFile as e:
                raise CimSyntaxError(f"{p}: not a readable zip archive ({e})", source=str(p)) from e
            out.extend((p, n, f"{p.name}:{n}") for n in names)
        elif p.exists():
            out.append((p, None, p.name))
        else:
            raise FileNotFoundError(f"CIM input {p} does not exist")
    if not out:
        raise CimError("no CIM XML files among the inputs")
    return out


def _parse(stream: IO[bytes], label: str, store: _Store) -> None:
    depth, root = 0, None
    try:
        for event, elem in ET.iterparse(stream, events=("start", "end")):
            if event == "start":
                depth += 1
                if depth == 1:
                    root = elem
                    if elem.tag != f"{{{RDF}}}RDF":
                        raise CimNamespaceError(
                            f"{label}: root element is {elem.tag}, not rdf:RDF", source=label
                        )
                continue
            depth -= 1
            if depth == 1:
                store.add(elem, label)
                root.clear()  # keep memory bounded: drop the object just processed
    except ET.ParseError as e:
        raise CimSyntaxError(f"{label}: truncated or malformed XML ({e})", source=label) from e


def read_cim_store(paths: Iterable[str | Path]) -> _Store:
    store = _Store()
    for path, member, label in _sources(paths):
        with _open_member(path, member) as f:
            _parse(f, label, store)
    if len(store.versions) > 1:
        raise CimNamespaceError(f"several CIM versions mixed in one model: {store.versions}")
    if not store.versions:
        raise CimNamespaceError("no CIM objects found in the inputs")
    return store


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def _bool(v: str | None) -> bool | None:
    return None if v in (None, "") else v.strip().lower() == "true"


def read_cgmes(
    paths: Iterable[str | Path] | str | Path,
    network_id: str,
    *,
    area_bbox: tuple[float, float, float, float] | None = None,
) -> Network:
    """Read a CGMES model (files, zips or folders) into a :class:`Network`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    s = read_cim_store(paths)
    P, cls = s.props, s.cls

    def name(mrid: str) -> str | None:
        return P.get(mrid, {}).get("IdentifiedObject.name") or None

    def describe(mrid: str) -> str:
        n = name(mrid)
        return f"{cls.get(mrid, 'object')} {mrid}" + (f" ({n!r})" if n else "")

    # Dangling references. CGMES 2.4.15 defines objects with rdf:ID (rdf:about only extends
    # them from another profile); CGMES 3 defines them with rdf:about.
    exists = cls if "cim100" in s.versions else s.defined_in
    for klass, refs in CHECKED_REFS.items():
        for mrid in s.by_class.get(klass, []):
            for ref in refs:
                target = P[mrid].get(ref)
                if target and target not in exists:
                    raise CimDanglingReference(
                        f"{describe(mrid)} references missing object {target!r} via {ref}"
                        f" (defined in {s.defined_in.get(mrid, 'an extension profile')})",
                        object_id=mrid,
                    )
    for local, props, label in s.anonymous:
        for ref in CHECKED_REFS.get(local, ()):
            target = props.get(ref)
            if target and target not in exists:
                raise CimDanglingReference(
                    f"{local} in {label} references missing object {target!r} via {ref}",
                    object_id=target,
                    source=label,
                )

    # Positions: GL PositionPoints per Location, converted to WGS84.
    points_by_loc: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    pp = [(P[m], m) for m in s.by_class.get("PositionPoint", [])] + [
        (props, None) for local, props, _ in s.anonymous if local == "PositionPoint"
    ]
    for props, mrid in pp:
        x, y = _float(props.get("PositionPoint.xPosition")), _float(props.get("PositionPoint.yPosition"))
        loc = props.get("PositionPoint.Location")
        if x is None or y is None or not loc:
            raise CimStructureError(
                f"PositionPoint {mrid or '(anonymous)'} lacks coordinates or its Location", object_id=mrid
            )
        seq = _float(props.get("PositionPoint.sequenceNumber"))
        points_by_loc[loc].append((seq if seq is not None else 0.0, x, y))
    location_of: dict[str, list[tuple[float, float]]] = {}
    for loc in s.by_class.get("Location", []):
        psr = P[loc].get("Location.PowerSystemResources")
        pts = points_by_loc.get(loc)
        if not psr or not pts:
            continue
        pts.sort(key=lambda t: t[0])
        xy = [(x, y) for _, x, y in pts]
        crs = P.get(P[loc].get("Location.CoordinateSystem", ""), {}).get("CoordinateSystem.crsUrn")
        location_of[psr] = _to_wgs84(xy, crs, loc)

    diagram_of: dict[str, list[tuple[float, float]]] = {}
    dpts: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    dop = [P[m] for m in s.by_class.get("DiagramObjectPoint", [])] + [
        props for local, props, _ in s.anonymous if local == "DiagramObjectPoint"
    ]
    for props in dop:
        x, y = (
            _float(props.get("DiagramObjectPoint.xPosition")),
            _float(props.get("DiagramObjectPoint.yPosition")),
        )
        if x is not None and y is not None and props.get("DiagramObjectPoint.DiagramObject"):
            seq = _float(props.get("DiagramObjectPoint.sequenceNumber")) or 0.0
            dpts[props["DiagramObjectPoint.DiagramObject"]].append((seq, x, y))
    for do in s.by_class.get("DiagramObject", []):
        io = P[do].get("DiagramObject.IdentifiedObject")
        if io and dpts.get(do) and io not in diagram_of:
            diagram_of[io] = [(x, y) for _, x, y in sorted(dpts[do])]

    # Voltages and containers.
    def nominal_kv(bv: str | None) -> float | None:
        return _float(P.get(bv, {}).get("BaseVoltage.nominalVoltage")) if bv else None

    def substation_of_container(c: str | None) -> str | None:
        for _ in range(4):  # Bay -> VoltageLevel -> Substation
            if c is None:
                return None
            k = cls.get(c)
            if k == "Substation":
                return c
            c = (
                P.get(c, {}).get("Bay.VoltageLevel")
                if k == "Bay"
                else P.get(c, {}).get("VoltageLevel.Substation")
            )
        return None

    def voltage_of_container(c: str | None) -> float | None:
        if c and cls.get(c) == "Bay":
            c = P.get(c, {}).get("Bay.VoltageLevel")
        return nominal_kv(P.get(c, {}).get("VoltageLevel.BaseVoltage")) if c else None

    # Terminals by equipment, in sequenceNumber order.
    terminals: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for t in s.by_class.get("Terminal", []):
        ce = P[t].get("Terminal.ConductingEquipment")
        if ce:
            seq = _float(P[t].get("ACDCTerminal.sequenceNumber"))
            terminals[ce].append((seq if seq is not None else math.inf, t))
    for lst in terminals.values():
        lst.sort()

    def node_of(t: str) -> str | None:
        return P[t].get("Terminal.ConnectivityNode") or P[t].get("Terminal.TopologicalNode")

    def connected(t: str) -> bool:
        return _bool(P[t].get("ACDCTerminal.connected")) is not False

    # Nodes: every CN/TN a terminal uses (CN when the model is node-breaker).
    node_ids = sorted({n for lst in terminals.values() for _, t in lst if (n := node_of(t))})
    node_sub, node_kv = {}, {}
    for n in node_ids:
        pr = P.get(n, {})
        container = pr.get("ConnectivityNode.ConnectivityNodeContainer") or pr.get(
            "TopologicalNode.ConnectivityNodeContainer"
        )
        node_sub[n] = substation_of_container(container)
        node_kv[n] = nominal_kv(pr.get("TopologicalNode.BaseVoltage")) or voltage_of_container(container)
    sub_pos = {
        sid: _point(location_of[sid]) for sid in s.by_class.get("Substation", []) if sid in location_of
    }
    equip_pos: dict[str, tuple[float, float]] = {}
    for ce, lst in terminals.items():
        if len(lst) == 1 and ce in location_of and len(location_of[ce]) == 1:
            n = node_of(lst[0][1])
            if n and (n not in equip_pos or ce < equip_pos[n][0]):
                equip_pos[n] = (ce, location_of[ce][0])
    node_pos = {
        n: sub_pos.get(node_sub[n]) or (equip_pos[n][1] if n in equip_pos else None) for n in node_ids
    }

    # Lines.
    segs = s.by_class.get("ACLineSegment", [])
    per_container = defaultdict(int)
    for seg in segs:
        per_container[P[seg].get("Equipment.EquipmentContainer")] += 1
    rows = defaultdict(list)
    for seg in segs:
        pr = P[seg]
        ts = terminals.get(seg, [])
        if len(ts) != 2:
            raise CimStructureError(f"{describe(seg)} has {len(ts)} terminals, expected 2", object_id=seg)
        (_, t1), (_, t2) = ts
        n1, n2 = node_of(t1), node_of(t2)
        for t, n in ((t1, n1), (t2, n2)):
            if n is None:
                raise CimStructureError(
                    f"Terminal {t} of {describe(seg)} is connected to no ConnectivityNode "
                    f"or TopologicalNode (is the TP profile missing?)",
                    object_id=t,
                )
        if seg in location_of and len(location_of[seg]) >= 2:
            geom, gsrc = shapely.LineString(location_of[seg]), "gl"
        elif node_pos.get(n1) and node_pos.get(n2):
            geom, gsrc = shapely.LineString([node_pos[n1], node_pos[n2]]), "straight"
        elif seg in diagram_of and len(diagram_of[seg]) >= 2:
            geom, gsrc = shapely.LineString(diagram_of[seg]), "schematic"
        else:
            raise CimMissingCoordinates(
                f"{describe(seg)} has no GL location, its end nodes have no position and it has no "
                f"diagram layout",
                object_id=seg,
            )
        container = pr.get("Equipment.EquipmentContainer")
        own = name(seg)
        if container and cls.get(container) == "Line" and per_container[container] > 1 and name(container):
            line_name, lsrc = name(container), "Line.name"
        else:
            line_name, lsrc = own, ("ACLineSegment.name" if own else "missing")
        length_km = _float(pr.get("Conductor.length"))
        bch = _float(pr.get("ACLineSegment.bch"))
        conductor, csrc = conductor_from_name(own), "name"
        if conductor is None and length_km and bch is not None:
            nf_per_km = bch / (2 * math.pi * 50.0) / length_km * 1e9
            conductor, csrc = (
                ("underground_cable" if nf_per_km > CABLE_MIN_NF_PER_KM else "overhead_bare"),
                "bch_per_km",
            )
        if conductor is None:
            conductor, csrc = DEFAULT_CONDUCTOR, "default"
        kv = nominal_kv(pr.get("ConductingEquipment.BaseVoltage")) or node_kv.get(n1) or node_kv.get(n2)
        for k, v in (
            ("line_id", seg),
            ("name", own),
            ("line_name", line_name),
            ("line_name_source", lsrc),
            ("from_node", n1),
            ("to_node", n2),
            ("from_closed", connected(t1)),
            ("to_closed", connected(t2)),
            ("in_service", True),
            ("voltage_kv", kv),
            ("conductor_type", conductor),
            ("conductor_type_source", csrc),
            ("source_length_m", length_km * 1000.0 if length_km is not None else np.nan),
            ("geometry", geom),
            ("geometry_source", gsrc),
        ):
            rows[k].append(v)
    lines = frame(rows, LINE_COLUMNS, WGS84)

    # Transformers: one row per lower-voltage end.
    ends = defaultdict(list)
    for e in s.by_class.get("PowerTransformerEnd", []):
        pr = P[e]
        t = pr.get("TransformerEnd.Terminal")
        kv = _float(pr.get("PowerTransformerEnd.ratedU")) or nominal_kv(pr.get("TransformerEnd.BaseVoltage"))
        if t and pr.get("PowerTransformerEnd.PowerTransformer"):
            ends[pr["PowerTransformerEnd.PowerTransformer"]].append((kv or 0.0, e, t))
    trows = defaultdict(list)
    for pt in sorted(ends):
        es = sorted(ends[pt], key=lambda r: (-r[0], r[1]))
        hv_kv, _, hv_t = es[0]
        hv_node = node_of(hv_t)
        sub = substation_of_container(P.get(pt, {}).get("Equipment.EquipmentContainer")) or node_sub.get(
            hv_node
        )
        for lv_kv, _, lv_t in es[1:]:
            for k, v in (
                ("transformer_id", pt),
                ("name", name(pt)),
                ("substation_id", sub),
                ("hv_node", hv_node),
                ("lv_node", node_of(lv_t)),
                ("hv_kv", hv_kv),
                ("lv_kv", lv_kv),
                ("closed", connected(hv_t) and connected(lv_t)),
            ):
                trows[k].append(v)
    transformers = frame(trows, TRANSFORMER_COLUMNS)
    node_ids = sorted(set(node_ids))

    srows = defaultdict(list)
    for klass in sorted(SWITCH_CLASSES):
        for sw in s.by_class.get(klass, []):
            ts = terminals.get(sw, [])
            if len(ts) != 2:
                continue
            pr = P[sw]
            is_open = _bool(pr.get("Switch.open"))
            if is_open is None:
                is_open = bool(_bool(pr.get("Switch.normalOpen")))
            for k, v in (
                ("switch_id", sw),
                ("name", name(sw)),
                ("node_a", node_of(ts[0][1])),
                ("node_b", node_of(ts[1][1])),
                ("closed", (not is_open) and connected(ts[0][1]) and connected(ts[1][1])),
            ):
                srows[k].append(v)
    switches = frame(srows, SWITCH_COLUMNS)

    subs = sorted(s.by_class.get("Substation", []))
    substations = frame(
        {
            "substation_id": subs,
            "name": [name(x) or x for x in subs],
            "label_id": [P[x].get("IdentifiedObject.shortName") or x for x in subs],
            "geometry": [shapely.Point(sub_pos[x]) if x in sub_pos else None for x in subs],
        },
        SUBSTATION_COLUMNS,
        WGS84,
    )
    nodes = frame(
        {
            "node_id": node_ids,
            "name": [name(n) for n in node_ids],
            "voltage_kv": [node_kv.get(n) for n in node_ids],
            "substation_id": [node_sub.get(n) for n in node_ids],
            "geometry": [shapely.Point(node_pos[n]) if node_pos.get(n) else None for n in node_ids],
        },
        NODE_COLUMNS,
        WGS84,
    )
    nodes["voltage_kv"] = nodes["voltage_kv"].astype(float)
    lines["voltage_kv"] = lines["voltage_kv"].astype(float)
    if area_bbox is None:
        area, area_source = bbox_from_points(nodes.geometry.to_numpy()), "derived_from_node_positions"
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
        source="cgmes:" + "+".join(sorted(s.versions)),
        notes={"geometry_sources": lines["geometry_source"].value_counts().to_dict()},
    )


def _point(xy: list[tuple[float, float]]) -> tuple[float, float]:
    """A substation position: its single point, or the mean of its outline points."""
    arr = np.asarray(xy, dtype=float)
    return (
        (float(arr[:, 0].mean()), float(arr[:, 1].mean()))
        if len(arr) > 1
        else (float(arr[0, 0]), float(arr[0, 1]))
    )


_EPSG = re.compile(r"EPSG:*(\d+)", re.IGNORECASE)


def _to_wgs84(xy: list[tuple[float, float]], crs_urn: str | None, loc: str) -> list[tuple[float, float]]:
    """GL coordinates in WGS84 lon/lat; a Location without CoordinateSystem is taken as EPSG:4326."""
    if not crs_urn:
        return xy
    m = _EPSG.search(crs_urn)
    if not m:
        raise CimStructureError(
            f"Location {loc} uses unsupported coordinate system {crs_urn!r}", object_id=loc
        )
    code = int(m.group(1))
    if code in (4326, 4258):  # ETRS89 and WGS84 agree within a metre
        return xy
    t = pyproj.Transformer.from_crs(f"EPSG:{code}", WGS84, always_xy=True)
    x, y = t.transform([p[0] for p in xy], [p[1] for p in xy])
    return list(zip(x, y))
