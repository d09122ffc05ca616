"""Publish one network's topology atomically (dataset ``topology``, architecture.md).

Files of a version (``$GRID_DATA_DIR/published/topology/<network_id>/<version>/``):

| file | content |
|---|---|
| ``shapes.geojson`` | FeatureCollection of every shape, ``id`` = segment_id, GridShapeProperties |
| ``tiles/<tile_id>.geojson`` | the same features, per 5 km tile (a shape may be in several) |
| ``substations.geojson`` | FeatureCollection of substations (§3.1 substation properties) |
| ``shapes.parquet`` | GridShapeProperties + ``feature_geojson`` (text) + ``geom`` (WKB, EPSG:32632) |
| ``fragments.parquet`` | fragment rows (risk inputs) + ``geom`` (WKB, EPSG:32632) |
| ``substations.parquet`` | risk-model.md §12 columns, ordered by name |
| ``tile_index.parquet`` / ``.json`` | TileInfo rows ordered tile_y, tile_x |
| ``grid_tiles.parquet`` | (tile, shape) pairs for ``shapes?tile_id=`` |
| ``filters.json`` | FilterOptions |
| ``quality.json`` | data-quality counts and attribute provenance |

No tree-strike spans are written: no vegetation analysis exists yet (spec: only real data).
Everything is written inside :func:`grid_platform.publish.publish`'s temporary folder, so a
failure anywhere leaves ``current`` on the previous version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import shapely

from ..publish import Publication, publish
from ..settings import load_settings
from .build import SHAPE_PROPERTIES, SUBSTATION_TABLE_COLUMNS, TopologyBuild, substation_segment_id
from .geojson import collection_bytes, features

DATASET = "topology"
SUBSTATION_PROPERTIES = [c for c in SUBSTATION_TABLE_COLUMNS if c != "feature_geojson"]
_FEATURE_PREFIX = len('{"type":"Feature","geometry":')


def _geometry_json(feature_geojson: pd.Series) -> list[str]:
    """The geometry text inside each ``feature_geojson`` (built by :func:`geojson.feature_text`)."""
    return [t[_FEATURE_PREFIX:-1] for t in feature_geojson.tolist()]


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False, compression="zstd")


def write_shapes_geojson(build: TopologyBuild, out: Path) -> None:
    """``shapes.geojson`` and ``tiles/<tile_id>.geojson`` from one serialisation per feature."""
    shapes = build.shapes
    feats = features(
        shapes["segment_id"], _geometry_json(shapes["feature_geojson"]), shapes[SHAPE_PROPERTIES]
    )
    bounds = build.bounds_wgs84
    (out / "shapes.geojson").write_bytes(collection_bytes(feats, _bbox(bounds)))
    tiles = out / "tiles"
    tiles.mkdir()
    pos = pd.Index(shapes["segment_id"]).get_indexer(build.grid_tiles["segment_id"])
    tile_ids = build.grid_tiles["tile_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, tile_ids[1:] != tile_ids[:-1]]) if len(tile_ids) else []
    for s, e in zip(starts, list(starts[1:]) + [len(tile_ids)]):
        rows = pos[s:e]
        (tiles / f"{tile_ids[s]}.geojson").write_bytes(
            collection_bytes([feats[i] for i in rows], _bbox(bounds[rows]))
        )


def _bbox(bounds: np.ndarray) -> list[float] | None:
    if len(bounds) == 0:
        return None
    return [
        float(np.nanmin(bounds[:, 0])),
        float(np.nanmin(bounds[:, 1])),
        float(np.nanmax(bounds[:, 2])),
        float(np.nanmax(bounds[:, 3])),
    ]


def write_substations(build: TopologyBuild, out: Path) -> None:
    subs = build.substations
    _write_parquet(subs[SUBSTATION_TABLE_COLUMNS], out / "substations.parquet")
    ids = [substation_segment_id(build.dso_id, a) for a in subs["asset_id"]]
    feats = features(ids, _geometry_json(subs["feature_geojson"]), subs[SUBSTATION_PROPERTIES])
    bounds = np.column_stack([subs["longitude"], subs["latitude"], subs["longitude"], subs["latitude"]])
    (out / "substations.geojson").write_bytes(collection_bytes(feats, _bbox(bounds)))


def write_tables(build: TopologyBuild, out: Path) -> None:
    shapes = pd.DataFrame(build.shapes[SHAPE_PROPERTIES + ["feature_geojson"]])
    shapes["geom"] = shapely.to_wkb(build.shapes["geom"].to_numpy())
    _write_parquet(shapes, out / "shapes.parquet")
    frag = pd.DataFrame(build.fragments.drop(columns="geometry"))
    frag["geom"] = shapely.to_wkb(build.fragments.geometry.to_numpy())
    _write_parquet(frag, out / "fragments.parquet")
    _write_parquet(build.tile_index, out / "tile_index.parquet")
    _write_parquet(build.grid_tiles, out / "grid_tiles.parquet")
    tiles = [
        {**r, "tile_bbox_geojson": orjson.Fragment(r["tile_bbox_geojson"])}
        for r in build.tile_index.to_dict("records")
    ]
    (out / "tile_index.json").write_bytes(orjson.dumps(tiles, option=orjson.OPT_SERIALIZE_NUMPY))
    (out / "filters.json").write_bytes(orjson.dumps(build.filters, option=orjson.OPT_SERIALIZE_NUMPY))
    (out / "quality.json").write_bytes(
        orjson.dumps(
            {
                "network_id": build.network_id,
                "dso_id": build.dso_id,
                "area_bbox": [float(v) for v in build.area_bbox],
                "quality": build.quality,
                "provenance": build.provenance,
            },
            option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        )
    )


def write_topology(build: TopologyBuild, out: Path) -> None:
    write_tables(build, out)
    write_substations(build, out)
    write_shapes_geojson(build, out)


def publish_topology(build: TopologyBuild, root: Path | None = None) -> Publication:
    """Publish ``build`` as the next version of ``topology/<network_id>`` and switch ``current``."""
    root = root if root is not None else load_settings().published_dir
    return publish(
        root,
        DATASET,
        build.network_id,
        lambda tmp: write_topology(build, tmp),
        extra={"segments": build.quality.get("segments"), "tiles": build.quality.get("tiles")},
    )
