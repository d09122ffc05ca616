"""Large networks made by tiling real ones, for scale tests and benchmarks.

Copies of the base networks (e.g. mv_oberrhein with lv_schutterwald layered in it, as in
reality) are laid side by side on a grid in EPSG:32632, every id and name prefixed with
``c<k>/``, and neighbouring copies are joined by a tie cable between the first base's
east-most and west-most (resp. north-most and south-most) nodes, so the result is one
connected medium-voltage mesh rather than disjoint islands.
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .model import UTM32, WGS84, Network, reproject


def _prefixed(values, copies: int) -> np.ndarray:
    missing = pd.isna(np.asarray(values, dtype=object))
    base = ["" if m else str(v) for v, m in zip(values, missing)]
    out = np.array([f"c{k}/{v}" for k in range(copies) for v in base], dtype=object)
    out[np.tile(missing, copies)] = None
    return out


def _translated(geoms: np.ndarray, offsets: np.ndarray, copies: int) -> np.ndarray:
    """``copies`` translated copies of ``geoms`` (LineStrings or Points), vectorised."""
    n = len(geoms)
    valid = ~shapely.is_missing(geoms)
    coords, idx = shapely.get_coordinates(geoms[valid], return_index=True)
    m = int(valid.sum())
    all_coords = np.tile(coords, (copies, 1)) + np.repeat(offsets, len(coords), axis=0)
    all_idx = np.tile(idx, copies) + np.repeat(np.arange(copies) * m, len(idx))
    kinds = shapely.get_type_id(geoms[valid])
    out = np.full(n * copies, None, dtype=object)
    target = np.flatnonzero(np.tile(valid, copies))
    if m and np.all(kinds == 0):
        out[target] = shapely.points(all_coords)
    elif m:
        out[target] = shapely.linestrings(all_coords, indices=all_idx)
    return out


def tiled_network(bases: list[Network], copies: int, network_id: str = "tiled") -> Network:
    """``copies`` copies of ``bases`` on a square-ish grid, tied together at their borders."""
    if copies < 1 or not bases:
        raise ValueError("need at least one copy of at least one base network")
    parts = {k: [] for k in ("nodes", "lines", "substations", "transformers", "switches")}
    ref_cols = {
        "nodes": ["node_id", "substation_id"],
        "lines": ["line_id", "from_node", "to_node"],
        "substations": ["substation_id"],
        "transformers": ["transformer_id", "substation_id", "hv_node", "lv_node"],
        "switches": ["switch_id", "node_a", "node_b"],
    }
    for net in bases:
        for k, frames in parts.items():
            df = getattr(net, k).copy()
            if len(bases) > 1:  # source ids repeat across bases (bus:0 in both)
                for c in ref_cols[k]:
                    df[c] = [None if v is None else f"{net.network_id}/{v}" for v in df[c]]
            if "geometry" in df.columns:
                df["geometry"] = reproject(df.geometry.to_numpy(), net.crs, UTM32)
            frames.append(pd.DataFrame(df))
    base = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    bounds = shapely.total_bounds(
        np.concatenate([base["lines"]["geometry"].to_numpy(), base["nodes"]["geometry"].dropna().to_numpy()])
    )
    width, height = bounds[2] - bounds[0], bounds[3] - bounds[1]
    cols = math.ceil(math.sqrt(copies))
    cx, cy = np.arange(copies) % cols, np.arange(copies) // cols
    offsets = np.column_stack([cx * width, cy * height])

    id_cols = {
        "nodes": ["node_id", "name", "substation_id"],
        "lines": ["line_id", "name", "line_name", "from_node", "to_node"],
        "substations": ["substation_id", "name", "label_id"],
        "transformers": ["transformer_id", "name", "substation_id", "hv_node", "lv_node"],
        "switches": ["switch_id", "name", "node_a", "node_b"],
    }
    # References reuse the referenced id strings (saves a string per reference per copy).
    refs = {
        ("lines", "from_node"): "nodes",
        ("lines", "to_node"): "nodes",
        ("switches", "node_a"): "nodes",
        ("switches", "node_b"): "nodes",
        ("transformers", "hv_node"): "nodes",
        ("transformers", "lv_node"): "nodes",
        ("nodes", "substation_id"): "substations",
        ("transformers", "substation_id"): "substations",
    }
    key_col = {"nodes": "node_id", "substations": "substation_id"}
    out = {}
    for k in ("substations", "nodes", "lines", "transformers", "switches"):
        df = base[k]
        n = len(df)
        cols_out = {}
        for c in df.columns:
            target = refs.get((k, c))
            if target is not None and len(df):
                idx = pd.Index(base[target][key_col[target]]).get_indexer(df[c])
                m = len(base[target])
                pos = np.tile(idx, copies) + np.repeat(np.arange(copies) * m, n)
                ids = np.append(out[target][key_col[target]].to_numpy(), None)
                cols_out[c] = ids[np.where(np.tile(idx, copies) >= 0, pos, len(ids) - 1)]
            elif c in id_cols[k]:
                # Equal columns (name and line_name, substation_id and label_id) share strings.
                same = next((d for d in cols_out if d in id_cols[k] and df[d].equals(df[c])), None)
                cols_out[c] = cols_out[same] if same else _prefixed(df[c].tolist(), copies)
            elif c == "geometry":
                cols_out[c] = _translated(df[c].to_numpy(), offsets, copies)
            else:
                cols_out[c] = np.tile(df[c].to_numpy(), copies)
        out[k] = pd.DataFrame(cols_out) if n else df

    # Tie cables between neighbouring copies, on the first base network.
    first = bases[0].nodes
    pos = reproject(first.geometry.to_numpy(), bases[0].crs, UTM32)
    # Ties join nodes of the first base's main line voltage (not e.g. its LV busbars).
    lines0 = bases[0].lines
    kv = lines0["voltage_kv"].mode().iloc[0] if len(lines0) else np.nan
    on_main = (
        first["node_id"]
        .isin(
            set(lines0.loc[lines0["voltage_kv"] == kv, "from_node"])
            | set(lines0.loc[lines0["voltage_kv"] == kv, "to_node"])
        )
        .to_numpy()
    )
    has = ~pd.isna(pos) & on_main
    fx, fy = np.where(has, shapely.get_x(pos), np.nan), np.where(has, shapely.get_y(pos), np.nan)
    ends = {
        "east": int(np.nanargmax(fx)),
        "west": int(np.nanargmin(fx)),
        "north": int(np.nanargmax(fy)),
        "south": int(np.nanargmin(fy)),
    }
    ties = []
    for k in range(copies):
        for nb, (a, b) in ((k + 1, ("east", "west")), (k + cols, ("north", "south"))):
            if nb < copies and (nb != k + 1 or cx[k] + 1 < cols):
                ties.append((k, nb, ends[a], ends[b]))
    if ties:
        ta = np.array([t[0] for t in ties])
        tb = np.array([t[1] for t in ties])
        ia = np.array([t[2] for t in ties])
        ib = np.array([t[3] for t in ties])
        pa = np.column_stack([fx[ia], fy[ia]]) + offsets[ta]
        pb = np.column_stack([fx[ib], fy[ib]]) + offsets[tb]
        node_ids = base["nodes"]["node_id"].to_numpy()[: len(first)]
        names = [f"tie c{a}-c{b}" for a, b in zip(ta, tb)]
        kv = first["voltage_kv"].to_numpy(dtype=float)[ia]
        tie = pd.DataFrame(
            {
                "line_id": [f"tie:{a}-{b}" for a, b in zip(ta, tb)],
                "name": names,
                "line_name": names,
                "line_name_source": "tiling_tie",
                "from_node": [f"c{a}/{node_ids[i]}" for a, i in zip(ta, ia)],
                "to_node": [f"c{b}/{node_ids[i]}" for b, i in zip(tb, ib)],
                "from_closed": True,
                "to_closed": True,
                "in_service": True,
                "voltage_kv": kv,
                "conductor_type": "underground_cable",
                "conductor_type_source": "tiling_tie",
                "source_length_m": np.hypot(*(pb - pa).T),
                "geometry": shapely.linestrings(np.stack([pa, pb], axis=1)),
                "geometry_source": "straight",
            }
        )
        out["lines"] = pd.concat([out["lines"], tie[out["lines"].columns]], ignore_index=True)

    def geo(df: pd.DataFrame) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(df["geometry"].to_numpy(), crs=UTM32))

    lo = np.array([bounds[0], bounds[1]])
    hi = lo + offsets.max(axis=0) + [width, height]
    corners = reproject(
        shapely.points([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]), UTM32, WGS84
    )
    b = shapely.total_bounds(corners)
    area = (b[0] - 0.01, b[1] - 0.01, b[2] + 0.01, b[3] + 0.01)  # corners only approximate the UTM edges
    return Network(
        network_id=network_id,
        nodes=geo(out["nodes"]),
        lines=geo(out["lines"]),
        substations=geo(out["substations"]),
        transformers=out["transformers"],
        switches=out["switches"],
        area_bbox=area,
        area_source="tiled_extent",
        source="tiled:" + "+".join(b.network_id for b in bases) + f"x{copies}",
        crs=UTM32,
    )


def copies_for(n_segments: int, bases: list[Network]) -> int:
    """Copies needed for about ``n_segments`` line segments (≈ one segment per source line)."""
    per_copy = sum(len(b.lines) for b in bases)
    return max(1, math.ceil(n_segments / per_copy))
