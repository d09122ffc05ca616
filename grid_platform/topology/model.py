"""The common in-memory network model every source adapter produces.

Pandapower, SimBench and CIM/CGMES networks differ in how they name buses, lines and
switches; the topology pipeline (attributes, fragments, segments, tiles) only ever sees
this one shape. Geometries are kept in the source CRS (``Network.crs``, normally
EPSG:4326); the pipeline reprojects to the computation CRS EPSG:32632 itself.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

WGS84 = "EPSG:4326"
UTM32 = "EPSG:32632"  # computation CRS of the risk model (risk-model.md §9)

GEOMETRY_SOURCES = ("gl", "route", "straight", "schematic")

NODE_COLUMNS = ["node_id", "name", "voltage_kv", "substation_id", "geometry"]
LINE_COLUMNS = [
    "line_id",
    "name",
    "line_name",
    "line_name_source",
    "from_node",
    "to_node",
    "from_closed",
    "to_closed",
    "in_service",
    "voltage_kv",
    "conductor_type",
    "conductor_type_source",
    "source_length_m",
    "geometry",
    "geometry_source",
]
SUBSTATION_COLUMNS = ["substation_id", "name", "label_id", "geometry"]
TRANSFORMER_COLUMNS = [
    "transformer_id",
    "name",
    "substation_id",
    "hv_node",
    "lv_node",
    "hv_kv",
    "lv_kv",
    "closed",
]
SWITCH_COLUMNS = ["switch_id", "name", "node_a", "node_b", "closed"]


class TopologyError(Exception):
    """A network that cannot be turned into a consistent topology."""


class MissingGeometryError(TopologyError):
    """A line has no coordinates and no fallback from its end points exists."""


@dataclass
class Network:
    """One network in source terms.

    * ``nodes``: buses / ConnectivityNodes / TopologicalNodes with a Point (or None).
    * ``lines``: one row per source line (pandapower line, CIM ACLineSegment), with the
      line geometry and how it was obtained (``geometry_source`` in GEOMETRY_SOURCES), and
      ``from_closed``/``to_closed`` = the state of a line-end switch (pandapower ``et='l'``).
    * ``substations``, ``transformers`` (one row per lower-voltage winding, so three-winding
      units give two rows), ``switches`` (node-to-node, closed or open).
    * ``area_bbox``: the declared service area (lon_min, lat_min, lon_max, lat_max) in
      EPSG:4326; ``area_source`` says whether it was declared or derived from node positions.
    """

    network_id: str
    nodes: gpd.GeoDataFrame
    lines: gpd.GeoDataFrame
    substations: gpd.GeoDataFrame
    transformers: pd.DataFrame
    switches: pd.DataFrame
    area_bbox: tuple[float, float, float, float]
    area_source: str
    source: str
    crs: str = WGS84
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, cols in (
            ("nodes", NODE_COLUMNS),
            ("lines", LINE_COLUMNS),
            ("substations", SUBSTATION_COLUMNS),
            ("transformers", TRANSFORMER_COLUMNS),
            ("switches", SWITCH_COLUMNS),
        ):
            missing = [c for c in cols if c not in getattr(self, name).columns]
            if missing:
                raise TopologyError(f"network {self.network_id!r}: {name} lacks columns {missing}")
        bad = set(self.lines["geometry_source"].dropna()) - set(GEOMETRY_SOURCES)
        if bad:
            raise TopologyError(f"network {self.network_id!r}: unknown geometry_source {sorted(bad)}")
        if self.lines["line_id"].duplicated().any():
            dup = self.lines.loc[self.lines["line_id"].duplicated(), "line_id"].iloc[0]
            raise TopologyError(f"network {self.network_id!r}: duplicate line_id {dup!r}")
        if self.nodes["node_id"].duplicated().any():
            dup = self.nodes.loc[self.nodes["node_id"].duplicated(), "node_id"].iloc[0]
            raise TopologyError(f"network {self.network_id!r}: duplicate node_id {dup!r}")


def frame(rows: dict, columns: list[str], crs: str | None = None) -> gpd.GeoDataFrame | pd.DataFrame:
    """A frame with exactly ``columns`` (GeoDataFrame when it has a geometry column)."""
    df = pd.DataFrame({c: rows.get(c, []) for c in columns})
    if "geometry" in columns:
        return gpd.GeoDataFrame(
            df, geometry=gpd.GeoSeries(np.asarray(df["geometry"], dtype=object), index=df.index), crs=crs
        )
    return df


_TRANSFORMERS: dict[tuple[str, str], pyproj.Transformer] = {}


def reproject(geoms: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Reproject an array of shapely geometries (lon/lat axis order), vectorised."""
    if src == dst:
        return np.asarray(geoms, dtype=object)
    key = (src, dst)
    if key not in _TRANSFORMERS:
        _TRANSFORMERS[key] = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    t = _TRANSFORMERS[key]

    def _apply(xy: np.ndarray) -> np.ndarray:
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(np.asarray(geoms, dtype=object), _apply)


def bbox_from_points(points: np.ndarray, margin_deg: float = 0.01) -> tuple[float, float, float, float]:
    """Area bbox around node positions (used when a source declares no area)."""
    pts = np.asarray([p for p in points if p is not None and not shapely.is_empty(p)], dtype=object)
    if len(pts) == 0:
        raise TopologyError("no node positions to derive an area from")
    xmin, ymin, xmax, ymax = shapely.total_bounds(pts)
    return (xmin - margin_deg, ymin - margin_deg, xmax + margin_deg, ymax + margin_deg)


def sorted_factorize(values) -> tuple[np.ndarray, np.ndarray]:
    """Codes that rank strings in sorted order (missing -> -1) and the sorted uniques.

    Hash-factorise first, then sort only the uniques as fixed-width numpy text: pandas'
    ``factorize(sort=True)`` compares Python objects and is ~10x slower at a million rows.
    """
    codes, uniq = pd.factorize(np.asarray(values, dtype=object))
    if len(uniq) == 0:
        return codes.astype(np.int64), np.empty(0, dtype=object)
    order = np.argsort(np.asarray(uniq, dtype=str), kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return np.where(codes >= 0, rank[codes], -1), np.asarray(uniq, dtype=object)[order]


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector around bulk work that creates millions of acyclic
    objects (strings, geometries, dicts; all freed by reference counting): each allocation
    burst would otherwise trigger full collections rescanning the whole heap, input network
    included (~20 % of the build time at a million segments)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
