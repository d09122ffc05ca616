"""Vegetation fall-zone risk (§4): rule boundaries, metric nearest line, real Oberrhein lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from grid_platform.analytics import (
    VEGETATION_COLUMNS,
    GridGraph,
    assets_from_graph,
    lines_from_pandapower,
    segments_in_fall_zone,
    vegetation_risk,
)

METRIC = "EPSG:25832"
X0, Y0 = 420_000.0, 5_360_000.0  # near Offenburg in UTM 32N


def _straight_line() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"line_id": ["L1"], "line_class": ["overhead"]},
        geometry=[shapely.LineString([(X0, Y0 - 500), (X0, Y0 + 500)])],
        crs=METRIC,
    )


def _trees_at(
    offsets: list[float], heights: list[float], base: list[float] | None = None
) -> gpd.GeoDataFrame:
    n = len(offsets)
    return gpd.GeoDataFrame(
        {
            "tree_id": [f"T{i}" for i in range(n)],
            "species": ["Fagus sylvatica"] * n,
            "height_m": heights,
            "canopy_radius_m": [4.0] * n,
            "base_risk_score": base if base is not None else [0.0] * n,
        },
        geometry=[shapely.Point(X0 + d, Y0) for d in offsets],
        crs=METRIC,
    )


BOUNDARY_CASES = [
    # h, d, level, score
    (10.0, 0.0, "critical", 1.0),
    (10.0, 13.0, "critical", 0.85),  # d = 1.3 h
    (10.0, 13.01, "warning", 0.5 + (1 - 13.01 / 20) * 0.3),
    (10.0, 20.0, "warning", 0.5),  # d = 2 h
    (10.0, 20.01, "monitor", 0.2 + (1 - 20.01 / 50) * 0.2),
    (10.0, 50.0, "monitor", 0.2),  # d = 50 m
    (10.0, 50.01, "safe", 0.05),
    (30.0, 55.0, "warning", 0.5 + (1 - 55 / 60) * 0.3),  # beyond 50 m but within 2 h: rows are top-down
    (40.0, 50.5, "critical", 0.85 + (1 - 50.5 / 52) * 0.15),
]


def test_rule_boundaries() -> None:
    heights = [h for h, _, _, _ in BOUNDARY_CASES]
    offsets = [d for _, d, _, _ in BOUNDARY_CASES]
    result = vegetation_risk(_trees_at(offsets, heights), _straight_line())
    assert result["risk_level"].tolist() == [level for *_, level, _ in BOUNDARY_CASES]
    np.testing.assert_allclose(result["risk_score"], [score for *_, score in BOUNDARY_CASES], atol=1e-12)
    assert result["distance_to_line_m"].tolist() == offsets
    assert result["fall_zone_m"].tolist() == [round(1.3 * h, 2) for h in heights]


def test_safe_score_uses_base_risk() -> None:
    result = vegetation_risk(_trees_at([80.0, 80.0], [10.0, 10.0], base=[0.6, 0.02]), _straight_line())
    assert result["risk_level"].tolist() == ["safe", "safe"]
    assert result["risk_score"].tolist() == pytest.approx([0.3, 0.05])


def test_nearest_line_is_measured_in_metres_not_degrees() -> None:
    """0.0010° of longitude (≈74 m at 48.4° N) is nearer than 0.0008° of latitude (≈89 m)."""
    lon, lat = 7.8, 48.4
    lines = gpd.GeoDataFrame(
        {"line_id": ["east", "north"], "line_class": ["overhead", "overhead"]},
        geometry=[
            shapely.LineString([(lon + 0.0010, lat - 0.01), (lon + 0.0010, lat + 0.01)]),
            shapely.LineString([(lon - 0.01, lat + 0.0008), (lon + 0.01, lat + 0.0008)]),
        ],
        crs="EPSG:4326",
    )
    trees = gpd.GeoDataFrame(
        {"tree_id": ["T"], "height_m": [20.0]}, geometry=[shapely.Point(lon, lat)], crs="EPSG:4326"
    )
    degrees = shapely.distance(trees.geometry.iloc[0], lines.geometry.to_numpy())
    assert degrees.argmin() == 1  # the seed's planar lon/lat choice would be "north"
    result = vegetation_risk(trees, lines)
    assert result["nearest_line_id"].iloc[0] == "east"
    assert 73.0 < result["distance_to_line_m"].iloc[0] < 75.0
    assert result["risk_level"].iloc[0] == "safe"


def _trees_near_real_lines(lines_metric: gpd.GeoSeries) -> gpd.GeoDataFrame:
    """A tree east of the midpoint of every 6th line, offsets and heights cycling independently."""
    offsets = [3.0, 12.0, 25.0, 45.0, 90.0]
    heights = [8.0, 15.0, 22.0]
    rows = []
    for i, line in enumerate(lines_metric.to_numpy()[::6]):
        mid = line.interpolate(0.5, normalized=True)
        point = shapely.Point(mid.x + offsets[i % len(offsets)], mid.y)
        rows.append({"tree_id": f"T{i:03d}", "height_m": heights[i % len(heights)], "geometry": point})
    return gpd.GeoDataFrame(rows, crs=METRIC)


def test_real_oberrhein_lines_nearest_line_and_asset(oberrhein_net: Any, oberrhein: GridGraph) -> None:
    lines = lines_from_pandapower(oberrhein_net)
    assert len(lines) == 181 and set(lines["line_class"]) == {"overhead", "cable"}
    lines_metric = lines.geometry.to_crs(METRIC)
    trees = _trees_near_real_lines(lines_metric)
    assets = assets_from_graph(oberrhein)
    assert set(assets["asset_type"]) == {"SUBSTATION", "TRANSFORMER", "POLE"}
    stamp = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    result = vegetation_risk(trees, lines, assets, computed_at=stamp)  # trees in EPSG:25832, the rest WGS84
    assert list(result.columns) == list(VEGETATION_COLUMNS) and len(result) == len(trees)
    assert (result["computed_at"] == pd.Timestamp(stamp)).all()

    line_geoms = lines_metric.to_numpy()
    asset_geoms = assets.geometry.to_crs(METRIC).to_numpy()
    for row, point in zip(result.itertuples(), trees.geometry.to_numpy()):
        line_d = shapely.distance(point, line_geoms)
        assert row.nearest_line_id == lines["line_id"].iloc[int(np.argmin(line_d))]
        assert row.distance_to_line_m == round(float(line_d.min()), 2)
        assert row.nearest_line_class == lines["line_class"].iloc[int(np.argmin(line_d))]
        asset_d = shapely.distance(point, asset_geoms)
        assert row.nearest_asset_id == assets["asset_id"].iloc[int(np.argmin(asset_d))]
        assert row.distance_to_asset_m == round(float(asset_d.min()), 2)
        assert (
            row.risk_level.capitalize() in row.risk_explanation
            and row.nearest_line_class in row.risk_explanation
        )
        assert f"{row.fall_zone_m:.2f} m fall zone" in row.risk_explanation
    assert {"critical", "warning", "monitor", "safe"} <= set(result["risk_level"])


def test_segments_in_fall_zone_match_brute_force(oberrhein_net: Any) -> None:
    lines = lines_from_pandapower(oberrhein_net)
    lines_metric = lines.geometry.to_crs(METRIC).to_numpy()
    trees = _trees_near_real_lines(gpd.GeoSeries(lines_metric, crs=METRIC))
    exposed = segments_in_fall_zone(trees, lines)
    expected: dict[str, set[str]] = {}
    for tree_id, height, point in zip(trees["tree_id"], trees["height_m"], trees.geometry):
        for line_id, distance in zip(lines["line_id"], shapely.distance(point, lines_metric)):
            if distance <= 1.3 * height:
                expected.setdefault(line_id, set()).add(tree_id)
    assert exposed["line_id"].tolist() == sorted(expected)
    assert {row.line_id: set(row.tree_ids) for row in exposed.itertuples()} == expected
    assert (exposed["trees_in_fall_zone"] == exposed["tree_ids"].map(len)).all()
    assert (exposed["min_distance_m"] <= 1.3 * exposed["max_tree_height_m"]).all()


@pytest.mark.parametrize(
    ("trees", "lines", "message"),
    [
        (
            gpd.GeoDataFrame({"tree_id": ["T"], "height_m": [5.0]}, geometry=[shapely.Point(0, 0)]),
            _straight_line(),
            "no CRS",
        ),
        (_trees_at([1.0], [0.0]), _straight_line(), "positive height_m"),
        (_trees_at([1.0], [5.0]), _straight_line().iloc[0:0], "no power lines"),
    ],
)
def test_rejects_bad_input(trees: gpd.GeoDataFrame, lines: gpd.GeoDataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vegetation_risk(trees, lines)
