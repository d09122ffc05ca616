"""Fragment input of the risk model: the column contract of docs/publications.md.

``prepare_fragments`` checks the required columns, adds the optional tree-strike, thermal
and elevation columns as null when absent, drops fragments whose segment key is incomplete
(risk-model §2: no segment id, counted as a data-quality metric instead of silently
producing a NULL id) and parses the EPSG:32632 WKB geometry once.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from grid_platform.risk.matching import UTM, geometries, to_wgs84

IDENTITY = ["fragment_id", "segment_id", "dso_id", "network_id", "line_name", "conductor_type", "municipality",
            "operational_unit", "parent_substation_name", "feeder_id", "length_m"]
REQUIRED = [*IDENTITY, "geom"]
SEGMENT_KEY = ["dso_id", "line_name", "conductor_type", "municipality"]
OPTIONAL: dict[str, object] = {
    "strike_tree_tier": None, "strike_tree_multiplier": np.nan, "strike_density_per_km": np.nan,
    "is_vegetated_zone": False, "thermal_tier": None, "thermal_margin_c": np.nan, "thermal_theta_max_c": np.nan,
    "thermal_insulation": None, "elevation_start_m": np.nan, "elevation_end_m": np.nan,
}
# GeoJSON coordinates are rounded to 1e-7 degrees (about 1 cm).
GEOJSON_GRID_DEG = 1e-7


@dataclass(frozen=True)
class Fragments:
    frame: pd.DataFrame  # IDENTITY + OPTIONAL columns + feature_geojson, one row per fragment
    geoms: np.ndarray  # shapely geometries, EPSG:32632, aligned with ``frame``
    excluded_null_key: int  # fragments dropped because a segment key component is null


def feature_texts(geoms: np.ndarray) -> np.ndarray:
    """GeoJSON Feature text (EPSG:4326, empty properties) per EPSG:32632 geometry; None if missing."""
    wgs = shapely.set_precision(to_wgs84(geoms), GEOJSON_GRID_DEG)
    texts = shapely.to_geojson(wgs)
    return np.array([None if t is None else '{"type":"Feature","geometry":' + t + ',"properties":{}}'
                     for t in texts], dtype=object)


def prepare_fragments(fragments: pd.DataFrame) -> Fragments:
    """Fragments with ``geom`` (WKB or shapely, EPSG:32632), or a GeoDataFrame (any CRS)."""
    if "geom" not in fragments.columns and isinstance(fragments, gpd.GeoDataFrame):
        geo = fragments.to_crs(UTM) if fragments.crs is not None else fragments
        fragments = pd.DataFrame(fragments.drop(columns=fragments.geometry.name)).assign(
            geom=geo.geometry.to_numpy())
    missing = [c for c in REQUIRED if c not in fragments.columns]
    if missing:
        raise ValueError(f"fragments lack required columns {missing} (docs/publications.md)")
    if fragments["fragment_id"].duplicated().any():
        raise ValueError("fragments have duplicate fragment_id; fragment ids must be stable and unique")
    frame = fragments.copy()
    for column, default in OPTIONAL.items():
        if column not in frame.columns:
            frame[column] = default
    frame["is_vegetated_zone"] = frame["is_vegetated_zone"].eq(True)
    keep = frame[[*SEGMENT_KEY, "segment_id"]].notna().all(axis=1).to_numpy()
    frame = frame[keep].reset_index(drop=True)
    geoms = geometries(frame)
    frame = frame[[*IDENTITY, *OPTIONAL]].assign(feature_geojson=feature_texts(geoms))
    return Fragments(frame, geoms, int((~keep).sum()))
