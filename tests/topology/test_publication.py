"""Atomic publication of the topology dataset."""

from __future__ import annotations

import duckdb
import orjson
import pandas as pd
import pytest

from grid_platform.publish import current
from grid_platform.topology import (
    SHAPE_PROPERTIES,
    SUBSTATION_TABLE_COLUMNS,
    TILE_INDEX_COLUMNS,
    publication,
    publish_topology,
)


def test_publish_layout_and_contents(tmp_path, mv_build):
    pub = publish_topology(mv_build, tmp_path)
    assert current(tmp_path, "topology", "oberrhein_mv").version == pub.version
    names = set(pub.files)
    assert {
        "shapes.geojson",
        "substations.geojson",
        "shapes.parquet",
        "fragments.parquet",
        "substations.parquet",
        "tile_index.parquet",
        "tile_index.json",
        "grid_tiles.parquet",
        "filters.json",
        "quality.json",
    } <= names
    tiles = {n for n in names if n.startswith("tiles/")}
    assert tiles == {f"tiles/{t}.geojson" for t in mv_build.tile_index["tile_id"]}
    assert not any("tree_strike" in n for n in names)  # no vegetation data, no placeholder

    shapes = pd.read_parquet(pub.file("shapes.parquet"))
    assert list(shapes.columns) == SHAPE_PROPERTIES + ["feature_geojson", "geom"]
    con = duckdb.connect()
    n, kinds = con.execute(
        f"select count(*), count(distinct asset_type) from read_parquet('{pub.file('shapes.parquet')}')"
    ).fetchone()
    assert n == len(mv_build.shapes) and kinds == 2
    assert list(pd.read_parquet(pub.file("substations.parquet")).columns) == SUBSTATION_TABLE_COLUMNS
    assert list(pd.read_parquet(pub.file("tile_index.parquet")).columns) == TILE_INDEX_COLUMNS
    tile_json = orjson.loads(pub.file("tile_index.json").read_bytes())
    assert tile_json[0]["tile_bbox_geojson"]["type"] == "Polygon"
    assert orjson.loads(pub.file("filters.json").read_bytes()) == mv_build.filters

    fc = orjson.loads(pub.file("shapes.geojson").read_bytes())
    assert len(fc["features"]) == len(mv_build.shapes) and len(fc["bbox"]) == 4
    first_tile = mv_build.tile_index.iloc[0]
    tfc = orjson.loads(pub.file(f"tiles/{first_tile['tile_id']}.geojson").read_bytes())
    assert len(tfc["features"]) == first_tile["segment_count"]
    sub_fc = orjson.loads(pub.file("substations.geojson").read_bytes())
    assert set(sub_fc["features"][0]["properties"]) == set(SUBSTATION_TABLE_COLUMNS) - {"feature_geojson"}


def test_republish_identical_is_a_noop(tmp_path, mv_build):
    first = publish_topology(mv_build, tmp_path)
    again = publish_topology(mv_build, tmp_path)
    assert again.version == first.version and again.content_hash == first.content_hash


def test_failing_write_keeps_current(tmp_path, mv_build, lv_build, monkeypatch):
    good = publish_topology(mv_build, tmp_path)
    changed = type(mv_build)(**{**mv_build.__dict__, "filters": {**mv_build.filters, "lines": []}})

    def broken(build, out):
        (out / "tiles").mkdir()
        (out / "tiles" / "half.geojson").write_bytes(b'{"type":"FeatureCollection","features":[')
        raise OSError("disk full")

    monkeypatch.setattr(publication, "write_shapes_geojson", broken)
    with pytest.raises(OSError, match="disk full"):
        publish_topology(changed, tmp_path)
    assert current(tmp_path, "topology", "oberrhein_mv").version == good.version
    base = tmp_path / "topology" / "oberrhein_mv"
    assert sorted(p.name for p in base.iterdir()) == sorted([good.version, "current"])
