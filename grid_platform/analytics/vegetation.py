"""Vegetation fall-zone risk (grid-analytics.md §4).

fall_zone = 1.3 × tree height. Distances are planar metres in a metric CRS (EPSG:25832 for
the Oberrhein grids, EPSG:2056 for Swiss data): every layer is projected *before* the nearest
line is searched (STRtree), so the nearest line is the nearest in metres, never in lon/lat
degrees as in the seed.

Rule table, evaluated top-down, first match wins (d = distance to the nearest line, h = height):

| condition   | risk_score                               | risk_level |
|-------------|------------------------------------------|------------|
| d <= 1.3·h  | min(1.0, 0.85 + (1 − d/(1.3·h))·0.15)    | critical   |
| d <= 2·h    | 0.5 + (1 − d/(2·h))·0.3                  | warning    |
| d <= 50 m   | 0.2 + (1 − d/50)·0.2                     | monitor    |
| otherwise   | max(0.05, 0.5·base_risk_score)           | safe       |

The rules are evaluated on unrounded distances; ``fall_zone_m``, ``distance_to_line_m`` and
``distance_to_asset_m`` are reported to 2 decimals.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from grid_platform.analytics.graph import GridGraph

FALL_ZONE_FACTOR = 1.3
WARNING_FACTOR = 2.0
MONITOR_DISTANCE_M = 50.0
OBERRHEIN_CRS = "EPSG:25832"
SWISS_CRS = "EPSG:2056"

VEGETATION_COLUMNS = (
    "tree_id",
    "species",
    "height_m",
    "canopy_radius_m",
    "fall_zone_m",
    "distance_to_line_m",
    "nearest_line_id",
    "nearest_line_class",
    "nearest_asset_type",
    "nearest_asset_id",
    "distance_to_asset_m",
    "risk_score",
    "risk_level",
    "risk_explanation",
    "computed_at",
)


def fall_zone_rule(
    distance_m: np.ndarray, height_m: np.ndarray, base_risk_score: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """risk_score and risk_level of the §4 table, vectorised."""
    d = np.asarray(distance_m, dtype=np.float64)
    h = np.asarray(height_m, dtype=np.float64)
    fall_zone = FALL_ZONE_FACTOR * h
    warning_zone = WARNING_FACTOR * h
    conditions = [d <= fall_zone, d <= warning_zone, d <= MONITOR_DISTANCE_M]
    scores = [
        np.minimum(1.0, 0.85 + (1.0 - d / fall_zone) * 0.15),
        0.5 + (1.0 - d / warning_zone) * 0.3,
        0.2 + (1.0 - d / MONITOR_DISTANCE_M) * 0.2,
    ]
    score = np.select(
        conditions, scores, default=np.maximum(0.05, 0.5 * np.asarray(base_risk_score, dtype=float))
    )
    level = np.select(conditions, ["critical", "warning", "monitor"], default="safe")
    return score, level


def _metric(frame: gpd.GeoDataFrame, metric_crs: str, name: str) -> gpd.GeoSeries:
    if frame.crs is None:
        raise ValueError(f"{name} has no CRS; set it (e.g. EPSG:4326) before computing distances")
    return frame.geometry.to_crs(metric_crs)


def _nearest(points: gpd.GeoSeries, targets: gpd.GeoSeries) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest target per point (lowest index on ties) and the distance in CRS units."""
    tree = shapely.STRtree(targets.to_numpy())
    (point_idx, target_idx), distance = tree.query_nearest(
        points.to_numpy(), return_distance=True, all_matches=True
    )
    pairs = pd.DataFrame({"point": point_idx, "target": target_idx, "distance": distance})
    pairs = pairs.sort_values(["point", "target"]).drop_duplicates("point")
    nearest = np.full(len(points), -1, dtype=np.int64)
    dist = np.full(len(points), np.nan)
    nearest[pairs["point"].to_numpy()] = pairs["target"].to_numpy()
    dist[pairs["point"].to_numpy()] = pairs["distance"].to_numpy()
    return nearest, dist


def _tree_columns(trees: gpd.GeoDataFrame) -> dict[str, np.ndarray]:
    for column in ("tree_id", "height_m"):
        if column not in trees:
            raise ValueError(f"trees need a {column} column")
    height = pd.to_numeric(trees["height_m"]).to_numpy(dtype=np.float64)
    if not (height > 0).all():
        raise ValueError("every tree needs a positive height_m")
    n = len(trees)
    return {
        "tree_id": trees["tree_id"].to_numpy(),
        "species": trees["species"].to_numpy() if "species" in trees else np.full(n, None, dtype=object),
        "height_m": height,
        "canopy_radius_m": pd.to_numeric(trees["canopy_radius_m"]).to_numpy(dtype=float)
        if "canopy_radius_m" in trees
        else np.full(n, np.nan),
        "base_risk_score": pd.to_numeric(trees["base_risk_score"]).fillna(0.0).to_numpy(dtype=float)
        if "base_risk_score" in trees
        else np.zeros(n),
    }


def _explanation(level: str, distance: float, fall_zone: float, line_class: Any, line_id: Any) -> str:
    where = "inside" if distance <= fall_zone else "outside"
    return (
        f"{level.capitalize()}: {line_class} line {line_id} is {distance:.2f} m from the tree, "
        f"{where} its {fall_zone:.2f} m fall zone."
    )


def vegetation_risk(
    trees: gpd.GeoDataFrame,
    lines: gpd.GeoDataFrame,
    assets: gpd.GeoDataFrame | None = None,
    *,
    metric_crs: str = OBERRHEIN_CRS,
    computed_at: datetime | None = None,
) -> pd.DataFrame:
    """One §4 row per tree (columns :data:`VEGETATION_COLUMNS`).

    ``trees``: Points with ``tree_id``, ``height_m`` and optional ``species``,
    ``canopy_radius_m``, ``base_risk_score``. ``lines``: (Multi)LineStrings with ``line_id`` and
    ``line_class``. ``assets``: Points with ``asset_id`` and ``asset_type`` (transformers,
    substations, poles), optional.
    """
    if len(lines) == 0:
        raise ValueError("no power lines to measure against")
    tree = _tree_columns(trees)
    points = _metric(trees, metric_crs, "trees")
    line_idx, line_dist = _nearest(points, _metric(lines, metric_crs, "lines"))
    fall_zone = FALL_ZONE_FACTOR * tree["height_m"]
    score, level = fall_zone_rule(line_dist, tree["height_m"], tree["base_risk_score"])
    line_id = lines["line_id"].to_numpy()[line_idx]
    line_class = lines["line_class"].to_numpy()[line_idx]
    if assets is not None and len(assets):
        asset_idx, asset_dist = _nearest(points, _metric(assets, metric_crs, "assets"))
        asset_id = assets["asset_id"].to_numpy()[asset_idx]
        asset_type = assets["asset_type"].to_numpy()[asset_idx]
    else:
        asset_dist = np.full(len(trees), np.nan)
        asset_id = asset_type = np.full(len(trees), None, dtype=object)
    stamp = pd.Timestamp(computed_at or datetime.now(UTC))
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return pd.DataFrame(
        {
            "tree_id": tree["tree_id"],
            "species": tree["species"],
            "height_m": tree["height_m"],
            "canopy_radius_m": tree["canopy_radius_m"],
            "fall_zone_m": np.round(fall_zone, 2),
            "distance_to_line_m": np.round(line_dist, 2),
            "nearest_line_id": line_id,
            "nearest_line_class": line_class,
            "nearest_asset_type": asset_type,
            "nearest_asset_id": asset_id,
            "distance_to_asset_m": np.round(asset_dist, 2),
            "risk_score": score,
            "risk_level": level,
            "risk_explanation": [
                _explanation(*row) for row in zip(level, line_dist, fall_zone, line_class, line_id)
            ],
            "computed_at": stamp,
        },
        columns=list(VEGETATION_COLUMNS),
    )


def segments_in_fall_zone(
    trees: gpd.GeoDataFrame, lines: gpd.GeoDataFrame, *, metric_crs: str = OBERRHEIN_CRS
) -> pd.DataFrame:
    """Line segments within some tree's fall zone (any tree, not only the nearest line).

    One row per exposed segment, ascending ``line_id``: ``line_id``, ``line_class``,
    ``trees_in_fall_zone``, ``min_distance_m``, ``max_tree_height_m``, ``tree_ids``.
    """
    tree = _tree_columns(trees)
    points = _metric(trees, metric_crs, "trees").to_numpy()
    segments = _metric(lines, metric_crs, "lines").to_numpy()
    fall_zone = FALL_ZONE_FACTOR * tree["height_m"]
    tree_idx, line_idx = shapely.STRtree(segments).query(points, predicate="dwithin", distance=fall_zone)
    distance = shapely.distance(points[tree_idx], segments[line_idx])
    pairs = pd.DataFrame(
        {
            "line_id": lines["line_id"].to_numpy()[line_idx],
            "line_class": lines["line_class"].to_numpy()[line_idx],
            "tree_id": tree["tree_id"][tree_idx],
            "distance_m": distance,
            "height_m": tree["height_m"][tree_idx],
        }
    ).sort_values(["line_id", "distance_m", "tree_id"])
    return (
        pairs.groupby(["line_id", "line_class"], sort=True)
        .agg(
            trees_in_fall_zone=("tree_id", "size"),
            min_distance_m=("distance_m", "min"),
            max_tree_height_m=("height_m", "max"),
            tree_ids=("tree_id", list),
        )
        .reset_index()
    )


def lines_from_pandapower(net: Any) -> gpd.GeoDataFrame:
    """In-service pandapower lines with geometry: ``line_id`` (index), ``line_class``, WGS84 LineStrings."""
    line = net.line[net.line["in_service"].astype(bool) & net.line["geo"].notna()]
    return gpd.GeoDataFrame(
        {
            "line_id": line.index.astype(str),
            "line_class": np.where(line["type"].astype(str) == "ol", "overhead", "cable"),
        },
        geometry=shapely.from_geojson(line["geo"].astype(str).to_numpy()),
        crs="EPSG:4326",
    )


def assets_from_graph(
    graph: GridGraph, node_types: tuple[str, ...] = ("SUBSTATION", "TRANSFORMER", "POLE")
) -> gpd.GeoDataFrame:
    """Graph nodes of the given types with coordinates, as WGS84 asset points."""
    types = graph.node_type_names()
    keep = np.isin(types, node_types) & np.isfinite(graph.lat) & np.isfinite(graph.lon)
    return gpd.GeoDataFrame(
        {"asset_id": graph.node_id[keep], "asset_type": types[keep]},
        geometry=shapely.points(graph.lon[keep], graph.lat[keep]),
        crs="EPSG:4326",
    )
