"""Topology benchmarks; one JSON line per benchmark.

* ``geojson_66k``: our FeatureCollection writer vs ``GeoDataFrame.to_json`` on 66 000 line
  shapes built from the real mv_oberrhein + lv_schutterwald networks (tiled copies);
  outputs must parse equal. Target ratio >= 5.
* ``build_100k`` / ``build_1m``: segments + tiles + shapes (``build_topology``) of a tiled
  network of ~100 k / ~1 M segments, each in a fresh child process so its peak RSS
  (``ru_maxrss``) is its own. Targets at 1 M: < 90 s, < 4 GiB. The 100 k run also times a
  straightforward geopandas implementation (overlay with the municipal cells, dissolve,
  sjoin with the tiles) and checks it yields the same segments, lengths and tile pairs.
  At 1 M that baseline is not run (minutes and several GiB); baseline_s is null there.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import orjson
import pandas as pd
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")
os.environ.setdefault("PYTHONWARNINGS", "ignore")

from grid_platform.topology import (
    SHAPE_PROPERTIES,
    build_topology,
    copies_for,
    feature_collection,
    lv_schutterwald_network,
    mv_oberrhein_network,
    shapes_wgs84,
    tiled_network,
)
from grid_platform.topology.build import segment_id
from grid_platform.topology.model import UTM32, reproject


def bases():
    return [mv_oberrhein_network(), lv_schutterwald_network()]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best_of(fn, repeat: int = 3) -> tuple[float, float, object]:
    """Fastest of ``repeat`` runs in wall and in CPU seconds (the machine is shared; the minimum
    is the least disturbed, and CPU time shows what contention does to the wall time)."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return best, best_cpu, out


def bench_geojson(n: int = 66_000) -> dict:
    b = bases()
    build = build_topology(tiled_network(b, copies_for(n, b)))
    gdf = shapes_wgs84(build)
    gdf = gdf[gdf["asset_type"] == "ac_line_segment"].head(n).reset_index(drop=True)
    del b, build  # time both writers without a large live heap for the garbage collector to scan
    gc.collect()
    indexed = gdf.set_index("segment_id", drop=False)
    ours_s, ours_cpu_s, ours = best_of(lambda: feature_collection(gdf, SHAPE_PROPERTIES, "segment_id"))
    base_s, base_cpu_s, theirs = best_of(lambda: indexed.to_json(na="null"))
    parsed = orjson.loads(ours)
    parsed.pop("bbox")
    if parsed != json.loads(theirs):
        raise AssertionError("GeoJSON differs from GeoDataFrame.to_json once parsed")
    vertices = int(shapely.get_num_coordinates(gdf.geometry.to_numpy()).sum())
    return {
        "name": "geojson_66k",
        "n": len(gdf),
        "ours_s": round(ours_s, 3),
        "baseline_s": round(base_s, 3),
        "ratio": round(base_s / ours_s, 2),
        "cpu_ratio": round(base_cpu_s / ours_cpu_s, 2),
        "mean_vertices": round(vertices / len(gdf), 2),
        "properties": len(SHAPE_PROPERTIES),
        "ours_mb": round(len(ours) / 2**20, 1),
        "baseline_mb": round(len(theirs) / 2**20, 1),
        "note": "best of 3 runs each (wall and CPU time); both from the same GeoDataFrame (EPSG:4326)",
    }


def geopandas_baseline(net, build, cell_m: float = 2500.0, tile_m: float = 5000.0):
    """The straightforward geopandas way: overlay lines with municipal cells, dissolve per
    segment key, sjoin the segments with the tile envelopes."""
    lines = gpd.GeoDataFrame(
        net.lines[["line_id", "line_name", "conductor_type"]].copy(),
        geometry=gpd.GeoSeries(reproject(net.lines.geometry.to_numpy(), net.crs, UTM32), crs=UTM32),
    )
    x0, y0, x1, y1 = lines.total_bounds
    ix = np.arange(math.floor(x0 / cell_m), math.ceil(x1 / cell_m))
    iy = np.arange(math.floor(y0 / cell_m), math.ceil(y1 / cell_m))
    gx, gy = np.meshgrid(ix, iy)
    gx, gy = gx.ravel(), gy.ravel()
    cells = gpd.GeoDataFrame(
        {"municipality": [f"cell E{x * cell_m / 1000:.1f} N{y * cell_m / 1000:.1f}" for x, y in zip(gx, gy)]},
        geometry=shapely.box(gx * cell_m, gy * cell_m, (gx + 1) * cell_m, (gy + 1) * cell_m),
        crs=UTM32,
    )
    frag = gpd.overlay(lines, cells, how="intersection", keep_geom_type=True)
    frag["length_m"] = frag.geometry.length
    seg = frag.dissolve(by=["line_name", "conductor_type", "municipality"], aggfunc={"length_m": "sum"})
    seg = seg.reset_index()
    seg["segment_id"] = [
        segment_id(net.network_id, a, c, m)
        for a, c, m in zip(seg["line_name"], seg["conductor_type"], seg["municipality"])
    ]
    sx0, sy0, sx1, sy1 = seg.total_bounds
    tx0, ty0 = math.floor(sx0 / tile_m) * tile_m, math.floor(sy0 / tile_m) * tile_m
    nx, ny = math.ceil(sx1 / tile_m) - int(tx0 / tile_m), math.ceil(sy1 / tile_m) - int(ty0 / tile_m)
    tx, ty = np.meshgrid(np.arange(nx), np.arange(ny))
    tx, ty = tx.ravel(), ty.ravel()
    tiles = gpd.GeoDataFrame(
        {"tile_id": [f"tile_{a}_{b}" for a, b in zip(tx, ty)]},
        geometry=shapely.box(
            tx0 + tx * tile_m, ty0 + ty * tile_m, tx0 + (tx + 1) * tile_m, ty0 + (ty + 1) * tile_m
        ),
        crs=UTM32,
    )
    pairs = gpd.sjoin(seg[["segment_id", "geometry"]], tiles, predicate="intersects")
    return seg[["segment_id", "length_m"]], pairs[["tile_id", "segment_id"]]


def compare_with_baseline(build, seg: pd.DataFrame, pairs: pd.DataFrame) -> None:
    ours = build.shapes[build.shapes["asset_type"] == "ac_line_segment"].set_index("segment_id")["length_m"]
    theirs = seg.set_index("segment_id")["length_m"]
    if set(ours.index) != set(theirs.index):
        raise AssertionError(f"segment ids differ: {len(set(ours.index) ^ set(theirs.index))} not shared")
    if not np.allclose(ours.sort_index(), theirs.sort_index(), rtol=1e-9, atol=1e-6):
        raise AssertionError("segment lengths differ from the geopandas baseline")
    lines = set(ours.index)
    ours_pairs = {
        p for p in zip(build.grid_tiles["tile_id"], build.grid_tiles["segment_id"]) if p[1] in lines
    }
    if ours_pairs != set(zip(pairs["tile_id"], pairs["segment_id"])):
        raise AssertionError("tile assignments differ from the geopandas baseline")


def bench_build(n: int, with_baseline: bool) -> dict:
    b = bases()
    t = time.perf_counter()
    net = tiled_network(b, copies_for(n, b))
    tiling_s = time.perf_counter() - t
    t = time.perf_counter()
    build = build_topology(net)
    ours_s = time.perf_counter() - t
    peak = peak_rss_mb()
    segments = build.quality["segments"]
    out = {
        "name": f"build_{'1m' if n >= 1_000_000 else f'{n // 1000}k'}",
        "n": segments,
        "ours_s": round(ours_s, 2),
        "baseline_s": None,
        "ratio": None,
        "per_100k_s": round(ours_s / segments * 100_000, 2),
        "peak_rss_mb": round(peak, 1),
        "tiling_s": round(tiling_s, 2),
        "lines": len(net.lines),
        "fragments": build.quality["fragments"],
        "tiles": build.quality["tiles"],
        "substations": build.quality["substations"],
    }
    if with_baseline:
        t = time.perf_counter()
        seg, pairs = geopandas_baseline(net, build)
        out["baseline_s"] = round(time.perf_counter() - t, 2)
        compare_with_baseline(build, seg, pairs)
        out["ratio"] = round(out["baseline_s"] / ours_s, 2)
        out["note"] = (
            "baseline: geopandas overlay + dissolve + sjoin for the geometric part only (feeder "
            "attributes, substations and GeoJSON text excluded); peak_rss_mb is ours before the "
            "baseline ran"
        )
    else:
        out["note"] = (
            "baseline not run at 1 M (the geopandas overlay/dissolve takes minutes and several GiB); "
            "see build_100k for the comparison; targets: < 90 s and < 4096 MB peak RSS"
        )
    return out


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(bench_build(int(sys.argv[2]), sys.argv[3] == "baseline")))
        return
    print(json.dumps(bench_geojson()), flush=True)
    for n, baseline in ((100_000, True), (1_000_000, False)):
        run = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "baseline" if baseline else "none"],
            check=False,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise RuntimeError(f"build benchmark n={n} failed:\n{run.stderr[-3000:]}")
        print(run.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
