"""GeoJSON writer equivalence, substations table and filters."""

from __future__ import annotations

import json

import orjson
import pandas as pd

from grid_platform.topology import (
    SHAPE_PROPERTIES,
    SUBSTATION_TABLE_COLUMNS,
    feature_collection,
    shapes_wgs84,
)
from grid_platform.topology.build import filter_options


def test_feature_collection_equals_to_json(lv_build, mv_build):
    for build in (lv_build, mv_build):
        gdf = shapes_wgs84(build)
        ours = orjson.loads(feature_collection(gdf, SHAPE_PROPERTIES, "segment_id"))
        theirs = json.loads(gdf.set_index("segment_id", drop=False).to_json(na="null"))
        bbox = ours.pop("bbox")
        assert ours == theirs  # coordinates bit-identical, properties identical
        assert [f["id"] for f in ours["features"]] == gdf["segment_id"].tolist()
        lon = [c[0] for f in ours["features"] for c in _coords(f["geometry"])]
        assert bbox[0] == min(lon) and bbox[2] == max(lon)
        assert {f["geometry"]["type"] for f in ours["features"]} >= {"LineString", "Point"}


def _coords(g):
    if g["type"] == "Point":
        return [g["coordinates"]]
    if g["type"] == "LineString":
        return g["coordinates"]
    return [c for part in g["coordinates"] for c in part]


def test_feature_geojson_column_matches_geometry(mv_build):
    gdf = shapes_wgs84(mv_build)
    for text, geom in zip(mv_build.shapes["feature_geojson"].head(50), gdf.geometry.head(50)):
        f = orjson.loads(text)
        assert f["type"] == "Feature" and f["geometry"] == json.loads(
            json.dumps(geom.__geo_interface__, default=list)
        )


def test_substations_table(mv_build):
    subs = mv_build.substations
    assert list(subs.columns) == SUBSTATION_TABLE_COLUMNS and len(subs) == 143
    assert subs["name"].tolist() == sorted(subs["name"].tolist())
    mvlv = subs[subs["name"].str.startswith("MV/LV")]
    assert mvlv["line_name"].notna().all() and mvlv["feeder_id"].notna().all()
    assert set(mvlv["parent_substation_name"]) == {"HV/MV Transformer 0", "HV/MV Transformer 1"}
    pt = orjson.loads(subs["feature_geojson"].iloc[0])["geometry"]
    assert pt["type"] == "Point" and pt["coordinates"] == [
        subs["longitude"].iloc[0],
        subs["latitude"].iloc[0],
    ]
    assert subs["municipality"].str.startswith("cell E").all()


def test_filters(mv_build):
    f = mv_build.filters
    shapes = mv_build.shapes
    assert set(f) == {
        "parent_substations",
        "lines",
        "operational_units",
        "municipalities",
        "extent_min_lng",
        "extent_min_lat",
        "extent_max_lng",
        "extent_max_lat",
    }
    lines = shapes[shapes["asset_type"] == "ac_line_segment"]
    assert f["lines"] == sorted(set(lines["asset_key"]))
    assert f["parent_substations"] == sorted(set(shapes["parent_substation_name"].dropna()))
    assert f["operational_units"] == ["HV/MV Transformer 0", "HV/MV Transformer 1"]
    assert f["municipalities"] == sorted(set(shapes["municipality"]))
    gdf = shapes_wgs84(mv_build)
    x0, y0, x1, y1 = gdf.total_bounds
    assert (f["extent_min_lng"], f["extent_min_lat"], f["extent_max_lng"], f["extent_max_lat"]) == (
        x0,
        y0,
        x1,
        y1,
    )


def test_filters_of_no_shapes():
    empty = pd.DataFrame({c: [] for c in SHAPE_PROPERTIES})
    assert filter_options(empty, None) == {
        "parent_substations": [],
        "lines": [],
        "operational_units": [],
        "municipalities": [],
        "extent_min_lng": None,
        "extent_min_lat": None,
        "extent_max_lng": None,
        "extent_max_lat": None,
    }
