"""Network -> fragments, segments ("grid_shapes"), substations, tiles and filters.

Implements risk-model.md §2 (fragments and segments), §9 (tiles) and §12 (substations and
filters) and grid-api.md §3.1–3.3 (shape properties, FilterOptions, TileInfo). Everything
is vectorised over fragments so a million segments build in well under a minute.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .feeders import PROVENANCE as FEEDER_PROVENANCE
from .feeders import FeederAttributes, derive_feeders
from .fragments import DEFAULT_CELL_M, MUNICIPALITY_PROVENANCE, cell_name, split_lines
from .geojson import feature_text, geometry_json
from .model import UTM32, WGS84, Network, gc_paused, reproject, sorted_factorize
from .tiles import TILE_M, tile_tables

# GridShapeProperties, in contract order (grid-api.md §3.1).
SHAPE_PROPERTIES = [
    "segment_id",
    "asset_type",
    "asset_key",
    "line_name",
    "conductor_type",
    "parent_substation_name",
    "operational_unit",
    "municipality",
    "feeder_id",
    "length_m",
    "is_vegetated_zone",
    "strike_tree_tier",
    "strike_tree_multiplier",
    "strike_density_per_km",
    "strike_km_high",
    "strike_km_mid",
    "strike_km_low",
    "voltage_class",
    "label",
    "label_id",
    "name",
    "thermal_tier",
    "thermal_margin_c",
    "thermal_theta_max_c",
    "thermal_insulation",
    "is_asphalt",
    "anno_posa",
    "technology",
    "m_r_critico",
]
# Vegetation and cable-thermal inputs (risk-model.md §2): null until those analyses exist.
FRAGMENT_INPUT_COLUMNS = [
    "is_vegetated_zone",
    "strike_tree_tier",
    "strike_tree_multiplier",
    "strike_density_per_km",
    "thermal_tier",
    "thermal_margin_c",
    "thermal_theta_max_c",
    "thermal_insulation",
]
FRAGMENT_COLUMNS = [
    "fragment_id",
    "line_id",
    "split_index",
    "segment_id",
    "dso_id",
    "network_id",
    "line_name",
    "conductor_type",
    "municipality",
    "operational_unit",
    "parent_substation_name",
    "feeder_id",
    "length_m",
    "voltage_kv",
    "geometry_source",
    "line_name_source",
    "conductor_type_source",
    "feeder_source",
    *FRAGMENT_INPUT_COLUMNS,
    "geometry",
]
SUBSTATION_TABLE_COLUMNS = [
    "asset_id",
    "name",
    "label_id",
    "label",
    "line_name",
    "feeder_id",
    "parent_substation_name",
    "operational_unit",
    "municipality",
    "longitude",
    "latitude",
    "feature_geojson",
]
SEGMENT_KEY = ["dso_id", "line_name", "conductor_type", "municipality"]
STRIKE_TIERS = {"low": 1, "mid": 2, "high": 3}
THERMAL_TIERS = {"unmodelled": 0, "low": 1, "mid": 2, "high": 3}
# Voltage classes by nominal kV (upper bounds inclusive): LV ≤ 1, MV ≤ 36, HV ≤ 150, EHV above.
VOLTAGE_CLASSES = ((1.0, "LV"), (36.0, "MV"), (150.0, "HV"), (np.inf, "EHV"))


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def segment_id(dso_id: str, line_name: str, conductor_type: str, municipality: str) -> str:
    """risk-model.md §2: md5 of ``dso|ac_line_segment|line|conductor|municipality``."""
    return md5_hex(f"{dso_id}|ac_line_segment|{line_name}|{conductor_type}|{municipality}")


def substation_segment_id(dso_id: str, asset_id: str) -> str:
    return md5_hex(f"{dso_id}|substation|{asset_id}")


def voltage_class(kv: np.ndarray) -> np.ndarray:
    kv = np.asarray(kv, dtype=float)
    out = np.full(len(kv), None, dtype=object)
    lower = -np.inf
    for upper, label in VOLTAGE_CLASSES:
        out[(kv > lower) & (kv <= upper)] = label
        lower = upper
    return out


@dataclass
class TopologyBuild:
    network_id: str
    dso_id: str
    fragments: gpd.GeoDataFrame  # FRAGMENT_COLUMNS, geometry EPSG:32632
    shapes: gpd.GeoDataFrame  # SHAPE_PROPERTIES + feature_geojson (EPSG:4326) + geom (EPSG:32632)
    substations: pd.DataFrame  # SUBSTATION_TABLE_COLUMNS, ordered by name
    tile_index: pd.DataFrame  # TILE_INDEX_COLUMNS
    grid_tiles: pd.DataFrame  # GRID_TILES_COLUMNS
    filters: dict
    quality: dict
    provenance: dict
    area_bbox: tuple[float, float, float, float]
    bounds_wgs84: np.ndarray  # per shape row: lon_min, lat_min, lon_max, lat_max


def build_fragments(
    net: Network, dso_id: str, cell_m: float = DEFAULT_CELL_M
) -> tuple[gpd.GeoDataFrame, FeederAttributes, dict]:
    """Fragments (EPSG:32632) plus the per-line and per-substation feeder attributes."""
    feeders = derive_feeders(net)
    lines = net.lines
    geographic = (lines["geometry_source"] != "schematic").to_numpy()
    utm = reproject(lines.geometry.to_numpy()[geographic], net.crs, UTM32)
    pos = np.flatnonzero(geographic)
    p_line, split_index, pieces, ix, iy = split_lines(utm, cell_m)
    src = pos[p_line]

    def take(col: str) -> np.ndarray:
        return lines[col].to_numpy()[src]

    def attr(col: str) -> np.ndarray:
        return feeders.lines[col].to_numpy()[src]

    line_ids = take("line_id")
    n = len(src)
    frag = {
        "fragment_id": np.array(
            [f"{lid}/{k}" for lid, k in zip(line_ids.tolist(), split_index.tolist())], dtype=object
        ),
        "line_id": line_ids,
        "split_index": split_index.astype(np.int64),
        "dso_id": np.full(n, dso_id, dtype=object),
        "network_id": np.full(n, net.network_id, dtype=object),
        "line_name": take("line_name"),
        "conductor_type": take("conductor_type"),
        "municipality": cell_name(ix, iy, cell_m),
        "operational_unit": attr("operational_unit"),
        "parent_substation_name": attr("parent_substation_name"),
        "feeder_id": attr("feeder_id"),
        "length_m": shapely.length(pieces),
        "voltage_kv": take("voltage_kv").astype(float),
        "geometry_source": take("geometry_source"),
        "line_name_source": take("line_name_source"),
        "conductor_type_source": take("conductor_type_source"),
        "feeder_source": attr("feeder_source"),
    }
    for c in FRAGMENT_INPUT_COLUMNS:
        frag[c] = np.full(n, None, dtype=object)
    keys = {c: frag[c] for c in SEGMENT_KEY}
    isnull = {c: pd.isna(keys[c]) for c in SEGMENT_KEY}
    complete = ~np.logical_or.reduce([isnull[c] for c in SEGMENT_KEY])
    sid = np.full(n, None, dtype=object)
    md5 = hashlib.md5
    sid[complete] = [
        md5(f"{d}|ac_line_segment|{ln}|{ct}|{mu}".encode()).hexdigest()  # = segment_id(), inlined
        for d, ln, ct, mu in zip(*(keys[c][complete].tolist() for c in SEGMENT_KEY))
    ]
    frag["segment_id"] = sid
    frag["geometry"] = gpd.GeoSeries(pieces, crs=UTM32)
    # Built once in final column order: reordering a million-row frame would copy it.
    fragments = gpd.GeoDataFrame({c: frag[c] for c in FRAGMENT_COLUMNS}, geometry="geometry", crs=UTM32)
    quality = {
        "lines": len(lines),
        "lines_schematic_excluded": int((~geographic).sum()),
        "fragments": int(n),
        "fragments_split_lines": len(np.unique(src[split_index > 0])),
        "fragments_without_segment_id": int((~complete).sum()),
        "fragments_null_key_component": {c: int(isnull[c].sum()) for c in SEGMENT_KEY},
        "lines_unreached_by_feeder_bfs": int((feeders.lines["feeder_source"] == "unreached").sum()),
        "graph_components": feeders.n_components,
    }
    return fragments, feeders, quality


def _worst(values: pd.Series, codes: np.ndarray, ranks: dict[str, int], n: int) -> np.ndarray:
    r = values.map(ranks).to_numpy(dtype=float)
    best = pd.Series(r).groupby(codes, sort=False).max().reindex(range(n)).to_numpy()
    lookup = np.full(max(ranks.values()) + 2, None, dtype=object)  # last slot: no tier
    for name, rank in ranks.items():
        lookup[rank] = name
    return lookup[np.where(np.isnan(best), len(lookup) - 1, np.nan_to_num(best)).astype(np.int64)]


def aggregate_segments(fragments: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Segments from fragments per risk-model.md §2 (fragments without segment id excluded)."""
    keyed = fragments["segment_id"].notna().to_numpy()
    f = fragments if keyed.all() else fragments[keyed]  # avoid copying a million rows when all are keyed
    codes, uniq = sorted_factorize(f["segment_id"])
    n = len(uniq)
    first = pd.Series(np.arange(len(f))).groupby(codes, sort=False).first().reindex(range(n)).to_numpy()
    flen = f["length_m"].to_numpy()
    length = np.bincount(codes, weights=flen, minlength=n)

    def gmin(col: str) -> np.ndarray:
        # Minimum string per segment via sorted factor codes (pandas' object min is pure Python).
        vcodes, values = sorted_factorize(f[col])
        big = np.iinfo(np.int64).max
        m = (
            pd.Series(np.where(vcodes < 0, big, vcodes))
            .groupby(codes, sort=False)
            .min()
            .reindex(range(n))
            .to_numpy()
        )
        lookup = np.append(np.asarray(values, dtype=object), None)
        return lookup[np.where(m == big, len(values), m)]

    def gnum(col: str, how: str) -> np.ndarray:
        return (
            pd.Series(pd.to_numeric(f[col], errors="coerce").to_numpy(dtype=float))
            .groupby(codes, sort=False)
            .agg(how)
            .reindex(range(n))
            .to_numpy()
        )

    seg = pd.DataFrame(
        {
            "segment_id": np.asarray(uniq, dtype=object),
            "asset_type": "ac_line_segment",
            "asset_key": f["line_name"].to_numpy()[first],
            "line_name": f["line_name"].to_numpy()[first],
            "conductor_type": f["conductor_type"].to_numpy()[first],
            "parent_substation_name": gmin("parent_substation_name"),
            "operational_unit": gmin("operational_unit"),
            "municipality": f["municipality"].to_numpy()[first],
            "feeder_id": gmin("feeder_id"),
            "length_m": length,
        }
    )
    veg = pd.Series(f["is_vegetated_zone"].to_numpy(dtype=object))
    any_veg = veg.map({True: 1.0, False: 0.0}).groupby(codes, sort=False).max().reindex(range(n)).to_numpy()
    seg["is_vegetated_zone"] = np.where(np.isnan(any_veg), None, any_veg > 0).astype(object)
    tier = f["strike_tree_tier"]
    seg["strike_tree_tier"] = _worst(tier, codes, STRIKE_TIERS, n)
    seg["strike_tree_multiplier"] = gnum("strike_tree_multiplier", "max")
    has_tier = tier.notna().to_numpy()
    dens = np.where(
        has_tier, pd.to_numeric(f["strike_density_per_km"], errors="coerce").fillna(0).to_numpy(), 0.0
    )
    num = np.bincount(codes, weights=dens * flen, minlength=n)
    any_tier = np.bincount(codes, weights=has_tier.astype(float), minlength=n) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        seg["strike_density_per_km"] = np.where(any_tier & (length > 0), num / length, np.nan)
    for t in ("high", "mid", "low"):
        km = np.bincount(codes, weights=np.where(tier.to_numpy() == t, flen, 0.0), minlength=n) / 1000.0
        seg[f"strike_km_{t}"] = np.where(any_tier, km, np.nan)
    seg["voltage_class"] = voltage_class(gnum("voltage_kv", "max"))
    for c in ("label", "label_id", "name"):
        seg[c] = None
    seg["thermal_tier"] = _worst(f["thermal_tier"], codes, THERMAL_TIERS, n)
    seg["thermal_margin_c"] = gnum("thermal_margin_c", "min")
    seg["thermal_theta_max_c"] = gnum("thermal_theta_max_c", "min")
    margin = pd.to_numeric(f["thermal_margin_c"], errors="coerce").to_numpy(dtype=float)
    tight = pd.DataFrame({"c": codes, "m": margin, "i": f["thermal_insulation"].to_numpy(dtype=object)})
    tight = (
        tight[~np.isnan(margin)].sort_values(["c", "m"], kind="stable").groupby("c", sort=False)["i"].first()
    )
    seg["thermal_insulation"] = (
        tight.reindex(range(n)).astype(object).where(lambda x: x.notna(), None).to_numpy()
    )
    for c in ("is_asphalt", "anno_posa", "technology", "m_r_critico"):
        seg[c] = None

    # Geometry: the fragment itself, or the merged union of several fragments.
    geoms = f.geometry.to_numpy()
    counts = np.bincount(codes, minlength=n)
    out = geoms[first].copy()
    multi = np.flatnonzero(counts > 1)
    if len(multi):
        sel = np.flatnonzero(np.isin(codes, multi))
        sel = sel[np.argsort(codes[sel], kind="stable")]  # keeps fragment order within a segment
        merged = shapely.multilinestrings(geoms[sel], indices=np.searchsorted(multi, codes[sel]))
        out[multi] = shapely.line_merge(merged)
    return gpd.GeoDataFrame(seg[SHAPE_PROPERTIES], geometry=gpd.GeoSeries(out, crs=UTM32))


def substation_shapes(net: Network, feeders, dso_id: str, cell_m: float) -> gpd.GeoDataFrame:
    """Shape rows of the substations that hold transformers (positioned; else skipped)."""
    subs = net.substations.copy()
    attrs = feeders.substations
    with_trafo = subs["substation_id"].isin(set(net.transformers["substation_id"].dropna()))
    pos = subs.geometry.to_numpy().copy()
    # A substation without its own position sits at its first positioned node.
    node_pos = net.nodes.dropna(subset=["substation_id"])
    node_pos = node_pos[node_pos.geometry.notna()].drop_duplicates("substation_id").set_index("substation_id")
    missing = pd.isna(pos)
    for i in np.flatnonzero(missing):
        sid = subs["substation_id"].iat[i]
        if sid in node_pos.index:
            pos[i] = node_pos.geometry.loc[sid]
    keep = with_trafo.to_numpy() & ~pd.isna(pos)
    subs, attrs, pos = subs[keep], attrs[keep], pos[keep]
    utm = reproject(pos, net.crs, UTM32)
    ix = np.floor(shapely.get_x(utm) / cell_m).astype(np.int64)
    iy = np.floor(shapely.get_y(utm) / cell_m).astype(np.int64)
    asset_id = subs["substation_id"].astype(str).to_numpy()
    df = pd.DataFrame({c: np.full(len(subs), None, dtype=object) for c in SHAPE_PROPERTIES})
    df["segment_id"] = [substation_segment_id(dso_id, a) for a in asset_id]
    df["asset_type"] = "substation"
    df["asset_key"] = asset_id
    df["parent_substation_name"] = attrs["parent_substation_name"].to_numpy()
    df["operational_unit"] = attrs["operational_unit"].to_numpy()
    df["feeder_id"] = attrs["feeder_id"].to_numpy()
    df["municipality"] = cell_name(ix, iy, cell_m) if len(subs) else []
    df["name"] = subs["name"].to_numpy()
    df["label"] = subs["name"].to_numpy()
    df["label_id"] = subs["label_id"].to_numpy()
    df["length_m"] = np.nan
    for c in (
        "strike_tree_multiplier",
        "strike_density_per_km",
        "strike_km_high",
        "strike_km_mid",
        "strike_km_low",
        "thermal_margin_c",
        "thermal_theta_max_c",
    ):
        df[c] = np.nan
    gdf = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(utm, crs=UTM32))
    # The substation table (§12) also names the line feeding the substation.
    gdf["_feeding_line"] = attrs["line_name"].to_numpy()
    return gdf


def wgs84_features(geoms_utm: np.ndarray, chunk: int = 200_000) -> tuple[list[str], np.ndarray]:
    """``feature_geojson`` text and EPSG:4326 bounds per geometry, in chunks so the
    reprojected geometries never all exist at once."""
    texts: list[str] = []
    bounds = []
    for i in range(0, len(geoms_utm), chunk):
        wgs = reproject(geoms_utm[i : i + chunk], UTM32, WGS84)
        texts += feature_text(geometry_json(wgs))
        bounds.append(shapely.bounds(wgs))
    return texts, (np.concatenate(bounds) if bounds else np.empty((0, 4)))


def shapes_wgs84(build: TopologyBuild) -> gpd.GeoDataFrame:
    """The shape rows with their geometry in EPSG:4326 (for previews and GeoDataFrame tools)."""
    props = pd.DataFrame(build.shapes[SHAPE_PROPERTIES])
    return gpd.GeoDataFrame(
        props,
        geometry=gpd.GeoSeries(
            reproject(build.shapes["geom"].to_numpy(), UTM32, WGS84), index=props.index, crs=WGS84
        ),
    )


def _concat(a: pd.Series, b: pd.Series) -> np.ndarray:
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return np.concatenate([a.to_numpy(), b.to_numpy()])
    return np.concatenate([a.to_numpy(dtype=object), b.to_numpy(dtype=object)])


def filter_options(shapes: pd.DataFrame, bbox_wgs84: list[float] | None) -> dict:
    """FilterOptions (grid-api.md §3.2) over the network's shapes."""

    def distinct(values) -> list[str]:
        return sorted_factorize(values)[1].tolist()

    lines = shapes[shapes["asset_type"] == "ac_line_segment"]
    b = bbox_wgs84 if bbox_wgs84 is not None and len(shapes) else [None, None, None, None]
    return {
        "parent_substations": distinct(shapes["parent_substation_name"]),
        "lines": distinct(lines["asset_key"]),
        "operational_units": distinct(shapes["operational_unit"]),
        "municipalities": distinct(shapes["municipality"]),
        "extent_min_lng": b[0],
        "extent_min_lat": b[1],
        "extent_max_lng": b[2],
        "extent_max_lat": b[3],
    }


def build_topology(
    net: Network, *, dso_id: str | None = None, cell_m: float = DEFAULT_CELL_M, tile_m: float = TILE_M
) -> TopologyBuild:
    """The whole topology of one network. ``dso_id`` defaults to the network id (its alias)."""
    with gc_paused():
        return _build(net, dso_id or net.network_id, cell_m, tile_m)


def _build(net: Network, dso: str, cell_m: float, tile_m: float) -> TopologyBuild:
    fragments, feeders, quality = build_fragments(net, dso, cell_m)
    segments = aggregate_segments(fragments)
    subs = substation_shapes(net, feeders, dso, cell_m)
    feeding_line = dict(zip(subs["segment_id"], subs["_feeding_line"]))
    subs = subs.drop(columns="_feeding_line")
    # Segments come sorted by segment_id (sorted factorize); substations follow, sorted too.
    # Column-wise concatenation: pandas' concat of mostly-null object columns is slow at scale.
    subs = subs.sort_values("segment_id", kind="stable")
    shapes = pd.DataFrame({c: _concat(segments[c], subs[c]) for c in SHAPE_PROPERTIES})
    geom_utm = np.concatenate([segments.geometry.to_numpy(), subs.geometry.to_numpy()])
    del segments
    feature_geojson, bounds = wgs84_features(geom_utm)
    out = gpd.GeoDataFrame(shapes, geometry=gpd.GeoSeries(geom_utm, crs=UTM32)).rename_geometry("geom")
    out["feature_geojson"] = feature_geojson
    tile_index, grid_tiles, _ = tile_tables(
        geom_utm, out["segment_id"].to_numpy(), out["asset_type"].to_numpy(), tile_m
    )
    bbox = (
        [
            float(np.nanmin(bounds[:, 0])),
            float(np.nanmin(bounds[:, 1])),
            float(np.nanmax(bounds[:, 2])),
            float(np.nanmax(bounds[:, 3])),
        ]
        if len(bounds)
        else None
    )

    st = out[out["asset_type"] == "substation"]
    substations = (
        pd.DataFrame(
            {
                "asset_id": st["asset_key"].to_numpy(),
                "name": st["name"].to_numpy(),
                "label_id": st["label_id"].to_numpy(),
                "label": st["label"].to_numpy(),
                "line_name": [feeding_line.get(s) for s in st["segment_id"]],
                "feeder_id": st["feeder_id"].to_numpy(),
                "parent_substation_name": st["parent_substation_name"].to_numpy(),
                "operational_unit": st["operational_unit"].to_numpy(),
                "municipality": st["municipality"].to_numpy(),
                "longitude": bounds[st.index.to_numpy(), 0],
                "latitude": bounds[st.index.to_numpy(), 1],
                "feature_geojson": st["feature_geojson"].to_numpy(),
            }
        )
        .sort_values(["name", "asset_id"], kind="stable")
        .reset_index(drop=True)
    )

    quality.update(
        {
            "segments": int((out["asset_type"] == "ac_line_segment").sum()),
            "substations": len(substations),
            "tiles": len(tile_index),
            "tile_assignments": len(grid_tiles),
        }
    )
    provenance = {
        "fragment_id": "<source line id>/<split index along the line>",
        "municipality": MUNICIPALITY_PROVENANCE.format(cell=cell_m),
        "length_m": "planar length of the fragment geometry in EPSG:32632",
        "line_name": "per line: see fragments.line_name_source",
        "conductor_type": "per line: see fragments.conductor_type_source",
        "voltage_class": "max fragment voltage_kv: LV <= 1 kV < MV <= 36 kV < HV <= 150 kV < EHV",
        **FEEDER_PROVENANCE,
        "tree_strike_and_thermal": "inputs absent: null",
        "area_bbox": net.area_source,
        "geometry_source": net.lines["geometry_source"].value_counts().to_dict(),
    }
    return TopologyBuild(
        network_id=net.network_id,
        dso_id=dso,
        fragments=fragments,
        shapes=out,
        substations=substations,
        tile_index=tile_index,
        grid_tiles=grid_tiles,
        filters=filter_options(out, bbox),
        quality=quality,
        provenance=provenance,
        area_bbox=net.area_bbox,
        bounds_wgs84=bounds,
    )
