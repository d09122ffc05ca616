"""Tile index (risk-model.md §9): extent snapping, boundary contact, degenerate extent."""

from __future__ import annotations

import numpy as np
import orjson
import shapely

from grid_platform.topology import TILE_ID_RE, TILE_INDEX_COLUMNS, assign_tiles, tile_grid, tile_tables


def pairs(geoms) -> set[tuple[int, int, int]]:
    _, shape, tx, ty = assign_tiles(np.array(geoms, dtype=object))
    return set(zip(shape.tolist(), tx.tolist(), ty.tolist()))


def test_extent_snaps_outward():
    g = tile_grid((412_345.0, 5_361_001.0, 421_000.0, 5_370_000.0))
    assert (g.x_min, g.y_min, g.nx, g.ny) == (410_000.0, 5_360_000.0, 3, 2)


def test_degenerate_extent_gets_one_tile():
    g = tile_grid((415_000.0, 5_360_000.0, 415_000.0, 5_372_000.0))
    assert (g.x_min, g.nx) == (415_000.0, 1) and g.ny == 3
    # A vertical line exactly on a tile edge: one tile column, every tile it crosses.
    line = shapely.LineString([(415_000, 5_360_000), (415_000, 5_372_000)])
    assert pairs([line]) == {(0, 0, 0), (0, 0, 1), (0, 0, 2)}
    assert pairs([shapely.Point(415_000, 5_360_000)]) == {(0, 0, 0)}


def test_shape_touching_an_edge_is_in_both_tiles():
    a = shapely.LineString([(410_100, 5_360_100), (415_000, 5_360_200)])  # ends on x = 415 000
    b = shapely.LineString([(419_000, 5_364_000), (419_500, 5_366_500)])  # widens the extent to 2 x 2
    p = shapely.Point(415_000, 5_365_000)  # on a tile corner
    got = pairs([a, b, p])
    assert {(0, 0, 0), (0, 1, 0)} <= got and (0, 0, 1) not in got
    assert {(2, 0, 0), (2, 1, 0), (2, 0, 1), (2, 1, 1)} <= got


def test_diagonal_line_skips_the_tile_its_bbox_covers():
    line = shapely.LineString([(400_100, 5_300_100), (409_900, 5_309_800)])  # crosses 3 of 4 tiles
    other = shapely.LineString([(401_000, 5_309_000), (401_100, 5_309_100)])
    got = {(tx, ty) for s, tx, ty in pairs([line, other]) if s == 0}
    assert got == {(0, 0), (1, 1), (1, 0)} or got == {(0, 0), (1, 1), (0, 1)}


def test_real_tile_index_matches_brute_force(mv_build):
    geoms = mv_build.shapes["geom"].to_numpy()
    index, grid_tiles, grid = tile_tables(
        geoms, mv_build.shapes["segment_id"].to_numpy(), mv_build.shapes["asset_type"].to_numpy()
    )
    brute = set()
    for tx in range(grid.nx):
        for ty in range(grid.ny):
            env = grid.envelope(np.array([tx]), np.array([ty]))[0]
            for sid in mv_build.shapes["segment_id"][shapely.intersects(env, geoms)]:
                brute.add((f"tile_{tx}_{ty}", sid))
    assert set(zip(grid_tiles["tile_id"], grid_tiles["segment_id"])) == brute
    assert list(index.columns) == TILE_INDEX_COLUMNS
    assert list(zip(index["tile_y"], index["tile_x"])) == sorted(zip(index["tile_y"], index["tile_x"]))
    assert index["tile_id"].map(lambda t: bool(TILE_ID_RE.match(t))).all()
    counts = grid_tiles.groupby("tile_id").size()
    assert (index.set_index("tile_id")["segment_count"] == counts.reindex(index["tile_id"])).all()
    poly = orjson.loads(index["tile_bbox_geojson"].iloc[0])
    assert poly["type"] == "Polygon" and len(poly["coordinates"][0]) == 5
    lon, lat = zip(*poly["coordinates"][0])
    assert 7.6 < min(lon) < max(lon) < 8.1 and 48.2 < min(lat) < max(lat) < 48.6
    assert mv_build.tile_index.equals(index)
