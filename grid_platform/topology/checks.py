"""Topology checks as pure functions, and a PNG map preview.

Each check returns a :class:`CheckResult` (name, passed, counts, a sample of offending
ids) that the Dagster asset checks wrap without further logic.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from .build import TopologyBuild, shapes_wgs84
from .model import WGS84, Network, reproject

SAMPLE = 20


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    metadata: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # first offending ids


def check_lines_join_nodes(net: Network) -> CheckResult:
    """Every line joins two distinct existing nodes."""
    known = pd.Index(net.nodes["node_id"])
    fi, ti = known.get_indexer(net.lines["from_node"]), known.get_indexer(net.lines["to_node"])
    bad = (fi < 0) | (ti < 0) | (fi == ti)
    ids = net.lines["line_id"].to_numpy()[bad]
    return CheckResult(
        "lines_join_two_existing_nodes",
        not bad.any(),
        {"lines": len(bad), "failing": int(bad.sum())},
        ids[:SAMPLE].tolist(),
    )


def check_geometries(build: TopologyBuild) -> CheckResult:
    """No missing, invalid or zero-length fragment or shape geometry."""
    problems = []
    for label, ids, geoms in (
        ("fragment", build.fragments["fragment_id"], build.fragments.geometry),
        ("shape", build.shapes["segment_id"], build.shapes["geom"]),
    ):
        g = geoms.to_numpy()
        missing = shapely.is_missing(g)
        bad = missing.copy()
        ok = ~missing
        bad[ok] = ~shapely.is_valid(g[ok]) | shapely.is_empty(g[ok])
        lines = ok & np.isin(shapely.get_type_id(g), (1, 5))
        bad[lines] |= shapely.length(g[lines]) <= 0
        problems += [f"{label}:{i}" for i in ids.to_numpy()[bad]]
    return CheckResult(
        "geometries_valid_nonzero", not problems, {"failing": len(problems)}, problems[:SAMPLE]
    )


def check_inside_area(net: Network) -> CheckResult:
    """Every line vertex and node position lies inside the declared area (EPSG:4326)."""
    lon0, lat0, lon1, lat1 = net.area_bbox
    failing = []
    for label, ids, geoms in (
        ("line", net.lines["line_id"], net.lines.geometry),
        ("node", net.nodes["node_id"], net.nodes.geometry),
    ):
        g = reproject(geoms.to_numpy(), net.crs, WGS84)
        coords, idx = shapely.get_coordinates(g, return_index=True)
        out = (coords[:, 0] < lon0) | (coords[:, 0] > lon1) | (coords[:, 1] < lat0) | (coords[:, 1] > lat1)
        failing += [f"{label}:{i}" for i in ids.to_numpy()[np.unique(idx[out])]]
    return CheckResult(
        "inside_declared_area",
        not failing,
        {
            "area_bbox": [float(v) for v in net.area_bbox],
            "area_source": net.area_source,
            "failing": len(failing),
        },
        failing[:SAMPLE],
    )


def check_components(build: TopologyBuild, max_components: int | None = None) -> CheckResult:
    """Connected components of the operated graph (switch states respected, transformers joining
    levels); passes when at most ``max_components`` (any number when None: informational)."""
    n = int(build.quality["graph_components"])
    return CheckResult(
        "connected_components",
        max_components is None or n <= max_components,
        {"components": n, "max_components": max_components},
    )


def run_checks(net: Network, build: TopologyBuild, max_components: int | None = None) -> list[CheckResult]:
    return [
        check_lines_join_nodes(net),
        check_geometries(build),
        check_inside_area(net),
        check_components(build, max_components),
    ]


CONDUCTOR_COLOURS = {
    "overhead_bare": "#1f77b4",
    "overhead_insulated": "#17becf",
    "underground_cable": "#8c564b",
}


def render_preview(build: TopologyBuild, path: str | Path | None = None, *, size_px: int = 900) -> bytes:
    """PNG of the network's shapes (lines by conductor type, substations as dots), EPSG:4326."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size_px / 100, size_px / 100), dpi=100)
    ax = fig.add_subplot()
    shapes = shapes_wgs84(build)
    lines = shapes[shapes["asset_type"] == "ac_line_segment"]
    parts, idx = shapely.get_parts(lines.geometry.to_numpy(), return_index=True)
    conductor = lines["conductor_type"].to_numpy()[idx]
    for kind in sorted(set(conductor.tolist()), key=str):
        sel = parts[conductor == kind]
        segs = [shapely.get_coordinates(p) for p in sel]
        ax.add_collection(
            LineCollection(
                segs,
                colors=CONDUCTOR_COLOURS.get(kind, "#6b7280"),
                linewidths=0.6,
                label=f"{kind} ({len(sel)})",
            )
        )
    subs = shapes[shapes["asset_type"] == "substation"]
    if len(subs):
        xy = shapely.get_coordinates(subs.geometry.to_numpy())
        ax.scatter(xy[:, 0], xy[:, 1], s=8, c="#D00000", label=f"substation ({len(subs)})", zorder=3)
    if len(shapes):
        x0, y0, x1, y1 = shapely.total_bounds(shapes.geometry.to_numpy())
        pad = max(x1 - x0, y1 - y0, 1e-3) * 0.03
        ax.set_xlim(x0 - pad, x1 + pad)
        ax.set_ylim(y0 - pad, y1 + pad)
        ax.set_aspect(1 / np.cos(np.radians((y0 + y1) / 2)))  # lon/lat at this latitude
        ax.legend(loc="upper left", fontsize=7)
    ax.set_title(
        f"{build.network_id}: {build.quality.get('segments', 0)} segments, "
        f"{build.quality.get('tiles', 0)} tiles",
        fontsize=9,
    )
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
