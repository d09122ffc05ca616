"""Fragments (and any geometry) to the nearest weather point within reach (risk-model.md §3).

Distances are EPSG:32632 metres between the asset geometry and the point. One STRtree over
the points answers all nearest-neighbour queries at once (``query_nearest`` with
``max_distance``, all equidistant matches returned); ties are then broken on (lat, lon)
ascending (then point id) by a sort, so the choice never depends on input order. No Python loop over pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

UTM = "EPSG:32632"
_TO_UTM = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
_TO_WGS84 = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def to_utm(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _TO_UTM.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))


def to_wgs84(geoms: np.ndarray) -> np.ndarray:
    """EPSG:32632 geometries to EPSG:4326 (lon, lat)."""
    return shapely.transform(geoms, lambda xy: np.column_stack(_TO_WGS84.transform(xy[:, 0], xy[:, 1])))


def geometries(frame: pd.DataFrame, column: str = "geom") -> np.ndarray:
    """Shapely geometries from a WKB column (bytes) or an already-built geometry column."""
    values = frame[column].to_numpy(object)
    if len(values) and isinstance(next((v for v in values if v is not None), None), bytes | bytearray | memoryview):
        return shapely.from_wkb(np.array([None if v is None else bytes(v) for v in values], dtype=object))
    return np.asarray(values, dtype=object)


def nearest_points(geoms: np.ndarray, points: pd.DataFrame, max_distance_m: float) -> pd.DataFrame:
    """For each geometry the nearest point within ``max_distance_m`` (inclusive).

    ``points`` has ``point_id, lat, lon``. Returns ``geom_index, point_id, distance_m`` for the
    geometries that have a point within reach (others are absent).
    """
    empty = pd.DataFrame({"geom_index": pd.Series(dtype=np.int64), "point_id": pd.Series(dtype=object),
                          "distance_m": pd.Series(dtype=float)})
    valid = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if len(geoms) else np.zeros(0, bool)
    if len(points) == 0 or not valid.any():
        return empty
    x, y = to_utm(points["lon"].to_numpy(), points["lat"].to_numpy())
    tree = shapely.STRtree(shapely.points(x, y))
    sub = np.flatnonzero(valid)
    (gi, pi), dist = tree.query_nearest(geoms[sub], max_distance=max_distance_m, return_distance=True,
                                        all_matches=True)
    if len(gi) == 0:
        return empty
    lat, lon = points["lat"].to_numpy(float)[pi], points["lon"].to_numpy(float)[pi]
    rank = pd.factorize(points["point_id"], sort=True)[0][pi]  # last resort: co-located points
    order = np.lexsort((rank, lon, lat, gi))
    gi, pi, dist = gi[order], pi[order], dist[order]
    first = np.r_[True, gi[1:] != gi[:-1]]
    return pd.DataFrame({"geom_index": sub[gi[first]], "point_id": points["point_id"].to_numpy()[pi[first]],
                         "distance_m": dist[first]})


def match_by_date(geoms: np.ndarray, point_days: pd.DataFrame, max_distance_m: float) -> pd.DataFrame:
    """``geom_index, date, point_id, distance_m``: each geometry and date to the nearest point
    that has a row for that date. Dates sharing one set of points share one query."""
    frames = []
    points = point_days.drop_duplicates("point_id").set_index("point_id")[["lat", "lon"]]
    by_date = point_days.groupby("date")["point_id"].agg(lambda s: tuple(sorted(s)))
    for point_set, dates in by_date.groupby(by_date):
        ids = list(point_set)
        found = nearest_points(geoms, points.loc[ids].reset_index(), max_distance_m)
        if found.empty:
            continue
        n = len(found)
        frames.append(pd.DataFrame({
            "geom_index": np.tile(found["geom_index"].to_numpy(), len(dates)),
            "date": np.repeat(dates.index.to_numpy(), n),
            "point_id": np.tile(found["point_id"].to_numpy(), len(dates)),
            "distance_m": np.tile(found["distance_m"].to_numpy(), len(dates)),
        }))
    if not frames:
        return pd.DataFrame({"geom_index": pd.Series(dtype=np.int64), "date": pd.Series(dtype="datetime64[ns]"),
                             "point_id": pd.Series(dtype=object), "distance_m": pd.Series(dtype=float)})
    return pd.concat(frames, ignore_index=True)


def grid_points(geoms: np.ndarray, spacing_m: float, max_distance_m: float) -> pd.DataFrame:
    """Weather points to ask a forecast API for: the nodes of a ``spacing_m`` EPSG:32632 grid
    within ``max_distance_m`` of any geometry (``point_id, lat, lon``; id = the node's UTM
    coordinates in metres). With ``spacing_m <= max_distance_m * sqrt(2)`` every geometry has a
    node within reach."""
    valid = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))] if len(geoms) else geoms
    if len(valid) == 0:
        return pd.DataFrame({"point_id": pd.Series(dtype=object), "lat": pd.Series(dtype=float),
                             "lon": pd.Series(dtype=float)})
    x0, y0, x1, y1 = shapely.total_bounds(valid)
    xs = np.arange(np.floor(x0 / spacing_m) - 1, np.ceil(x1 / spacing_m) + 2) * spacing_m
    ys = np.arange(np.floor(y0 / spacing_m) - 1, np.ceil(y1 / spacing_m) + 2) * spacing_m
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    near, _ = shapely.STRtree(valid).query(shapely.points(gx, gy), predicate="dwithin", distance=max_distance_m)
    keep = np.unique(near)
    lon, lat = _TO_WGS84.transform(gx[keep], gy[keep])
    ids = [f"utm32_{int(x)}_{int(y)}" for x, y in zip(gx[keep], gy[keep])]
    return pd.DataFrame({"point_id": ids, "lat": np.round(lat, 6), "lon": np.round(lon, 6)})
