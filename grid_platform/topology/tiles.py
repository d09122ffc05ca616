"""5 km tile index in EPSG:32632 (risk-model.md §9).

Candidates come from bbox arithmetic (each shape's bounds give its tile range, widened by
one tile where a bound lies exactly on a tile edge, because boundary contact counts); only
shapes whose range spans several tiles get an exact ``intersects`` test, vectorised.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import shapely

from .model import UTM32, WGS84, reproject

TILE_M = 5000.0
TILE_ID_RE = re.compile(r"^tile_\d+_\d+$")
TILE_INDEX_COLUMNS = ["tile_id", "tile_x", "tile_y", "tile_bbox_geojson", "segment_count"]
GRID_TILES_COLUMNS = ["tile_id", "tile_x", "tile_y", "segment_id", "asset_type"]


@dataclass(frozen=True)
class TileGrid:
    x_min: float
    y_min: float
    nx: int
    ny: int
    size: float = TILE_M

    def envelope(self, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
        x0 = self.x_min + np.asarray(tx) * self.size
        y0 = self.y_min + np.asarray(ty) * self.size
        return shapely.box(x0, y0, x0 + self.size, y0 + self.size)


def tile_grid(bounds: tuple[float, float, float, float], size: float = TILE_M) -> TileGrid:
    """Snapped extent; a degenerate axis (``max == min`` after snapping) gets one tile."""
    xmin, ymin, xmax, ymax = bounds
    x0, x1 = math.floor(xmin / size) * size, math.ceil(xmax / size) * size
    y0, y1 = math.floor(ymin / size) * size, math.ceil(ymax / size) * size
    if x1 == x0:
        x1 = x0 + size
    if y1 == y0:
        y1 = y0 + size
    return TileGrid(x0, y0, round((x1 - x0) / size), round((y1 - y0) / size), size)


def tile_id(tx, ty) -> str:
    return f"tile_{int(tx)}_{int(ty)}"


def assign_tiles(
    geoms: np.ndarray, size: float = TILE_M
) -> tuple[TileGrid | None, np.ndarray, np.ndarray, np.ndarray]:
    """(grid, shape index, tile_x, tile_y) for every (shape, tile) that intersect, boundary included."""
    geoms = np.asarray(geoms, dtype=object)
    empty = np.empty(0, dtype=np.int64)
    valid = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if len(geoms) else np.zeros(0, bool)
    if not valid.any():
        return None, empty, empty, empty
    b = shapely.bounds(geoms)
    grid = tile_grid(tuple(shapely.total_bounds(geoms[valid])), size)
    idx = np.flatnonzero(valid)
    rx0, ry0 = (b[idx, 0] - grid.x_min) / size, (b[idx, 1] - grid.y_min) / size
    rx1, ry1 = (b[idx, 2] - grid.x_min) / size, (b[idx, 3] - grid.y_min) / size
    # A lower bound exactly on an edge also touches the tile below it.
    tx0 = np.clip(np.ceil(rx0).astype(np.int64) - 1, 0, grid.nx - 1)
    ty0 = np.clip(np.ceil(ry0).astype(np.int64) - 1, 0, grid.ny - 1)
    tx1 = np.clip(np.floor(rx1).astype(np.int64), 0, grid.nx - 1)
    ty1 = np.clip(np.floor(ry1).astype(np.int64), 0, grid.ny - 1)
    cx, cy = tx1 - tx0 + 1, ty1 - ty0 + 1
    n = cx * cy
    rep = np.repeat(np.arange(len(idx)), n)
    k = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
    tx = tx0[rep] + k % cx[rep]
    ty = ty0[rep] + k // cx[rep]
    shape = idx[rep]
    multi = n[rep] > 1
    keep = np.ones(len(rep), dtype=bool)
    if multi.any():
        keep[multi] = shapely.intersects(grid.envelope(tx[multi], ty[multi]), geoms[shape[multi]])
    return grid, shape[keep], tx[keep], ty[keep]


def tile_tables(
    geoms_utm: np.ndarray, segment_ids: np.ndarray, asset_types: np.ndarray, size: float = TILE_M
) -> tuple[pd.DataFrame, pd.DataFrame, TileGrid | None]:
    """``tile_index`` (TileInfo rows, ordered tile_y, tile_x) and ``grid_tiles`` (tile, shape) pairs."""
    grid, shape, tx, ty = assign_tiles(geoms_utm, size)
    if grid is None:
        return (
            pd.DataFrame({c: [] for c in TILE_INDEX_COLUMNS}),
            pd.DataFrame({c: [] for c in GRID_TILES_COLUMNS}),
            None,
        )
    order = np.lexsort((shape, tx, ty))  # within a tile: shape order (shapes come sorted)
    shape, tx, ty = shape[order], tx[order], ty[order]
    pairs = pd.DataFrame(
        {
            "tile_x": tx,
            "tile_y": ty,
            "segment_id": np.asarray(segment_ids, dtype=object)[shape],
            "asset_type": np.asarray(asset_types, dtype=object)[shape],
        }
    )
    key = ty * grid.nx + tx
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    ux, uy = tx[first], ty[first]
    names = np.array([tile_id(x, y) for x, y in zip(ux.tolist(), uy.tolist())], dtype=object)
    pairs.insert(0, "tile_id", np.repeat(names, counts))
    envelopes = reproject(grid.envelope(ux, uy), UTM32, WGS84)
    bbox_json = [
        orjson.dumps({"type": "Polygon", "coordinates": [shapely.get_coordinates(e).tolist()]}).decode()
        for e in envelopes
    ]
    index = pd.DataFrame(
        {
            "tile_id": names,
            "tile_x": ux.astype(np.int64),
            "tile_y": uy.astype(np.int64),
            "tile_bbox_geojson": bbox_json,
            "segment_count": counts.astype(np.int64),
        }
    )
    return index, pairs[GRID_TILES_COLUMNS], grid
