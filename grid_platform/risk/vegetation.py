"""Tree layer and tree-strike spans.

A tree of height ``h`` can hit a conductor within ``reach_factor * h`` (1.3 h) of its foot.
A **span** is a maximal stretch of an overhead fragment lying within reach of at least one
tree. Spans are exact: each fragment is cut into straight pieces, each (tree, piece) pair
from one STRtree query yields the analytic interval where the piece is inside the tree's
reach circle, and overlapping intervals are merged per line part with a running maximum.

Two sources of trees:

* ``load_trees``: a surveyed layer (GeoJSON or GeoParquet points with a height);
* ``generate_trees``: a reproducible GENERATED layer along the network's overhead lines,
  seeded by the network id (forest stretches and scattered trees, heights 3-35 m), every
  tree marked ``generated = true`` — it stands in for a vegetation survey, it is not one.

Tiers: a fragment's strike-capable trees per km give its tier (thresholds in the config);
fragment inputs (``strike_tree_tier`` from a vegetation analysis) win over derived ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import ops

from grid_platform.risk.config import RiskConfig
from grid_platform.risk.fragments import Fragments, feature_texts
from grid_platform.risk.matching import UTM, to_wgs84
from grid_platform.topology.tiles import assign_tiles, tile_id

TREE_COLUMNS = ["tree_id", "height_m", "generated", "lon", "lat", "geom"]
HEIGHT_COLUMNS = ("height_m", "height", "tree_height_m", "hoehe")
SPAN_COLUMNS = ["span_id", "fragment_id", "segment_id", "line_name", "municipality", "operational_unit",
                "parent_substation_name", "feeder_id", "conductor_type", "tier", "multiplier",
                "strike_density_km", "n_strike", "length_m", "start_m", "end_m", "generated", "tile_ids",
                "feature_geojson", "geom"]
TIER_ORDER = ("high", "mid", "low")


def _seed(network_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"trees|{network_id}".encode()).digest()[:8], "big")


def _overhead(frags: Fragments, cfg: RiskConfig) -> np.ndarray:
    return np.flatnonzero(~frags.frame["conductor_type"].isin(cfg.tree_strike.excluded_conductors).to_numpy())


def _tree_frame(tree_ids: np.ndarray, heights: np.ndarray, points: np.ndarray, generated: bool) -> pd.DataFrame:
    wgs = to_wgs84(points)
    return pd.DataFrame({"tree_id": tree_ids, "height_m": heights, "generated": generated,
                         "lon": shapely.get_x(wgs), "lat": shapely.get_y(wgs), "geom": shapely.to_wkb(points)})


def generate_trees(frags: Fragments, network_id: str, cfg: RiskConfig) -> pd.DataFrame:
    """Reproducible generated trees along the overhead fragments (same network id and
    fragments -> same trees). Columns ``tree_id, height_m, generated, lon, lat, geom`` (WKB 32632)."""
    ts = cfg.tree_strike
    rng = np.random.default_rng(_seed(network_id))
    idx = _overhead(frags, cfg)
    idx = idx[np.argsort(frags.frame["fragment_id"].to_numpy(object)[idx].astype(str), kind="stable")]
    lines = frags.geoms[idx]
    lengths = shapely.length(lines)
    forested = rng.random(len(idx)) < ts.forested_share
    per_km = np.where(forested, ts.forest_trees_per_km, ts.open_trees_per_km)
    counts = rng.poisson(per_km * lengths / 1000.0)
    owner = np.repeat(np.arange(len(idx)), counts)
    n = len(owner)
    along = rng.random(n) * lengths[owner]
    lateral = rng.uniform(-ts.lateral_max_m, ts.lateral_max_m, n)
    heights = np.round(rng.uniform(ts.height_min_m, ts.height_max_m, n), 1)
    base = shapely.line_interpolate_point(lines[owner], along)
    ahead = shapely.line_interpolate_point(lines[owner], np.minimum(along + 1.0, lengths[owner]))
    behind = shapely.line_interpolate_point(lines[owner], np.maximum(along - 1.0, 0.0))
    dx, dy = shapely.get_x(ahead) - shapely.get_x(behind), shapely.get_y(ahead) - shapely.get_y(behind)
    norm = np.hypot(dx, dy)
    norm[norm == 0] = 1.0
    points = shapely.points(shapely.get_x(base) - dy / norm * lateral, shapely.get_y(base) + dx / norm * lateral)
    ids = np.array([f"{network_id}-gen-{i:07d}" for i in range(n)], dtype=object)
    return _tree_frame(ids, heights, points, generated=True)


def load_trees(path: str | Path) -> pd.DataFrame:
    """Surveyed trees from GeoJSON or GeoParquet points with a height column
    (``height_m``, ``height``, ``tree_height_m`` or ``hoehe``); reprojected to EPSG:32632."""
    path = Path(path)
    gdf = gpd.read_parquet(path) if path.suffix.lower() in (".parquet", ".geoparquet") else gpd.read_file(path)
    if gdf.crs is None:
        gdf = gdf.set_crs("EPSG:4326")
    column = next((c for c in HEIGHT_COLUMNS if c in gdf.columns), None)
    if column is None:
        raise ValueError(f"{path}: no tree height column (one of {HEIGHT_COLUMNS})")
    gdf = gdf[gdf.geometry.notna() & (gdf.geom_type == "Point")]
    heights = pd.to_numeric(gdf[column], errors="coerce").to_numpy(float)
    keep = np.isfinite(heights) & (heights > 0)
    gdf = gdf[keep]
    ids = gdf["tree_id"].astype(str).to_numpy(object) if "tree_id" in gdf.columns else \
        np.array([f"{path.stem}-{i}" for i in range(len(gdf))], dtype=object)
    points = gdf.to_crs(UTM).geometry.to_numpy()
    return _tree_frame(ids, heights[keep], points, generated=False)


def _pieces(lines: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Straight pieces of every line part (``line, part, x0, y0, x1, y1, offset, length``) and the parts."""
    parts, line_of_part = shapely.get_parts(lines, return_index=True)
    coords, part_of_coord = shapely.get_coordinates(parts, return_index=True)
    same = part_of_coord[1:] == part_of_coord[:-1]
    k = np.flatnonzero(same)
    x0, y0, x1, y1 = coords[k, 0], coords[k, 1], coords[k + 1, 0], coords[k + 1, 1]
    length = np.hypot(x1 - x0, y1 - y0)
    part = part_of_coord[k]
    cum = np.cumsum(length)
    start_of_part = np.r_[True, part[1:] != part[:-1]]
    base = np.maximum.accumulate(np.where(start_of_part, np.arange(len(k)), 0))
    offset = cum - length - (cum[base] - length[base])
    return pd.DataFrame({"line": line_of_part[part], "part": part, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                         "offset": offset, "length": length}), parts


def strike_intervals(lines: np.ndarray, trees: pd.DataFrame, reach_factor: float) -> tuple[pd.DataFrame, np.ndarray]:
    """``line, part, start_m, end_m, tree_id`` for every tree reaching a straight piece, and the parts."""
    pieces, parts = _pieces(lines)
    empty = pd.DataFrame({"line": [], "part": [], "start_m": [], "end_m": [], "tree_id": []})
    if pieces.empty or trees.empty:
        return empty, parts
    tree_geoms = shapely.from_wkb(trees["geom"].to_numpy(object))
    reach = trees["height_m"].to_numpy(float) * reach_factor
    segs = shapely.linestrings(np.stack([pieces[["x0", "y0"]].to_numpy(), pieces[["x1", "y1"]].to_numpy()], axis=1))
    ti, si = shapely.STRtree(segs).query(tree_geoms, predicate="dwithin", distance=reach)
    if len(ti) == 0:
        return empty, parts
    p = pieces.iloc[si]
    ax, ay = p["x0"].to_numpy(), p["y0"].to_numpy()
    dx, dy = p["x1"].to_numpy() - ax, p["y1"].to_numpy() - ay
    fx, fy = ax - shapely.get_x(tree_geoms[ti]), ay - shapely.get_y(tree_geoms[ti])
    a = dx * dx + dy * dy
    b = 2 * (fx * dx + fy * dy)
    c = fx * fx + fy * fy - reach[ti] ** 2
    root = np.sqrt(np.clip(b * b - 4 * a * c, 0, None))
    safe_a = np.where(a > 0, a, 1.0)
    t1 = np.clip((-b - root) / (2 * safe_a), 0, 1)
    t2 = np.clip((-b + root) / (2 * safe_a), 0, 1)
    keep = (a > 0) & (t2 > t1)
    seg_len = p["length"].to_numpy()
    return pd.DataFrame({"line": p["line"].to_numpy()[keep], "part": p["part"].to_numpy()[keep],
                         "start_m": (p["offset"].to_numpy() + t1 * seg_len)[keep],
                         "end_m": (p["offset"].to_numpy() + t2 * seg_len)[keep],
                         "tree_id": trees["tree_id"].to_numpy(object)[ti][keep],
                         "generated": trees["generated"].to_numpy(bool)[ti][keep]}), parts


def merge_intervals(iv: pd.DataFrame) -> pd.DataFrame:
    """Union of intervals per (line, part): ``line, part, start_m, end_m, n_strike, generated``."""
    if iv.empty:
        return pd.DataFrame({"line": [], "part": [], "start_m": [], "end_m": [], "n_strike": [], "generated": []})
    iv = iv.sort_values(["part", "start_m"], kind="stable", ignore_index=True)
    part = iv["part"].to_numpy()
    start, end = iv["start_m"].to_numpy(), iv["end_m"].to_numpy()
    # Running max of end within a part: shift each part by a stride larger than any position.
    stride = float(end.max()) + 1.0
    run_end = np.maximum.accumulate(end + part * stride) - part * stride
    new = np.r_[True, (part[1:] != part[:-1]) | (start[1:] > run_end[:-1])]
    span = np.cumsum(new) - 1
    return iv.assign(span=span).groupby("span", sort=True).agg(
        line=("line", "first"), part=("part", "first"), start_m=("start_m", "min"), end_m=("end_m", "max"),
        n_strike=("tree_id", "nunique"), generated=("generated", "any")).reset_index(drop=True)


def _tier(density_per_km: np.ndarray, cfg: RiskConfig) -> np.ndarray:
    thresholds = cfg.tree_strike.tier_min_density_per_km
    d = np.asarray(density_per_km, dtype=float)
    out = np.full(len(d), None, dtype=object)
    for tier in reversed(TIER_ORDER):  # low, mid, high: the highest satisfied threshold wins
        out[d >= thresholds[tier]] = tier
    out[~(d > 0)] = None
    return out


def tree_attributes(frags: Fragments, trees: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """Per overhead fragment: ``fragment_id, n_strike_trees, strike_density_per_km,
    strike_tree_tier, strike_tree_multiplier, is_vegetated_zone`` derived from the trees."""
    idx = _overhead(frags, cfg)
    iv, _ = strike_intervals(frags.geoms[idx], trees, cfg.tree_strike.reach_factor)
    n = iv.groupby("line")["tree_id"].nunique().reindex(np.arange(len(idx)), fill_value=0).to_numpy()
    km = shapely.length(frags.geoms[idx]) / 1000.0
    density = np.where(km > 0, n / np.where(km > 0, km, 1.0), 0.0)
    tier = _tier(density, cfg)
    multiplier = np.array([cfg.tree_strike.multipliers[t] if t else np.nan for t in tier], dtype=float)
    return pd.DataFrame({"fragment_id": frags.frame["fragment_id"].to_numpy()[idx], "n_strike_trees": n,
                         "strike_density_per_km": np.round(density, 3), "strike_tree_tier": tier,
                         "strike_tree_multiplier": multiplier, "is_vegetated_zone": n > 0})


def with_tree_attributes(frags: Fragments, attributes: pd.DataFrame) -> Fragments:
    """Fill the fragments' missing tree-strike inputs from derived attributes (inputs win)."""
    frame = frags.frame.merge(attributes, on="fragment_id", how="left", suffixes=("", "_derived"))
    has_input = frame["strike_tree_tier"].notna()
    for column in ("strike_tree_tier", "strike_tree_multiplier", "strike_density_per_km"):
        frame[column] = frame[column].where(has_input, frame[f"{column}_derived"])
    frame["is_vegetated_zone"] = frame["is_vegetated_zone"] | frame["is_vegetated_zone_derived"].eq(True)
    return Fragments(frame[frags.frame.columns], frags.geoms, frags.excluded_null_key)


def tree_strike_spans(frags: Fragments, trees: pd.DataFrame, cfg: RiskConfig,
                      shape_geoms: np.ndarray | None = None) -> pd.DataFrame:
    """Span rows (grid-api §3.1 tree-strike span properties) + ``tile_ids`` + ``feature_geojson``
    + ``geom`` (WKB 32632), ordered by ``span_id``.

    Tiles follow the topology tile grid of ``shape_geoms`` (the network's shapes, EPSG:32632),
    so spans land in the tiles of their lines; without shapes the fragments' extent is used.
    ``tier``/``multiplier`` are the fragment's (input, else derived from its tree density);
    ``strike_density_km`` is the span's own trees per km.
    """
    idx = _overhead(frags, cfg)
    iv, parts = strike_intervals(frags.geoms[idx], trees, cfg.tree_strike.reach_factor)
    spans = merge_intervals(iv)
    spans = spans[spans["end_m"] - spans["start_m"] > 0.01].reset_index(drop=True)
    if spans.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SPAN_COLUMNS})
    line = spans["line"].to_numpy(np.int64)
    frame = with_tree_attributes(frags, tree_attributes(frags, trees, cfg)).frame.iloc[idx[line]].reset_index(drop=True)
    geoms = np.array([ops.substring(parts[int(p)], s, e) for p, s, e in
                      zip(spans["part"], spans["start_m"], spans["end_m"])], dtype=object)
    length = spans["end_m"].to_numpy() - spans["start_m"].to_numpy()
    tier = frame["strike_tree_tier"].to_numpy(object)
    multiplier = frame["strike_tree_multiplier"].to_numpy(float)
    multiplier = np.where(np.isnan(multiplier), [cfg.tree_strike.multipliers.get(t, np.nan) if t else np.nan
                                                 for t in tier], multiplier)
    # span_id: fragment id + position along the fragment part, stable across runs.
    span_ids = (frame["fragment_id"].astype(str) + ":" + spans["part"].astype(int).astype(str) + ":"
                + np.round(spans["start_m"], 1).map("{:09.1f}".format)).to_numpy(object)
    out = frame[["fragment_id", "segment_id", "line_name", "municipality", "operational_unit",
                 "parent_substation_name", "feeder_id", "conductor_type"]].assign(
        span_id=span_ids, tier=tier, multiplier=multiplier,
        strike_density_km=np.round(spans["n_strike"].to_numpy() / (length / 1000.0), 3),
        n_strike=spans["n_strike"].to_numpy(np.int64), length_m=np.round(length, 2),
        start_m=np.round(spans["start_m"].to_numpy(), 2), end_m=np.round(spans["end_m"].to_numpy(), 2),
        generated=spans["generated"].to_numpy(bool), feature_geojson=feature_texts(geoms),
        geom=shapely.to_wkb(geoms))
    base = frags.geoms if shape_geoms is None else np.asarray(shape_geoms, dtype=object)
    _, shape, tx, ty = assign_tiles(np.concatenate([base, geoms]))
    mine = shape >= len(base)
    tiles = pd.DataFrame({"i": shape[mine] - len(base), "tile": [tile_id(x, y) for x, y in zip(tx[mine], ty[mine])]})
    by_span = tiles.groupby("i")["tile"].agg(lambda s: sorted(set(s)))
    out["tile_ids"] = [by_span.get(i, []) for i in range(len(out))]
    return out[SPAN_COLUMNS].sort_values("span_id", ignore_index=True)
