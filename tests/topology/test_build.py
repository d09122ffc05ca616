"""Fragments and segments (risk-model.md §2) on the real networks."""

from __future__ import annotations

import hashlib

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import shapely.affinity

from grid_platform.topology import (
    FRAGMENT_COLUMNS,
    SHAPE_PROPERTIES,
    aggregate_segments,
    build_topology,
    md5_hex,
    segment_id,
    substation_segment_id,
)
from grid_platform.topology.model import UTM32, reproject


def test_segment_id_is_md5_of_the_key(mv_build):
    lines = mv_build.shapes[mv_build.shapes["asset_type"] == "ac_line_segment"]
    for r in lines.itertuples():
        text = f"oberrhein_mv|ac_line_segment|{r.line_name}|{r.conductor_type}|{r.municipality}"
        assert r.segment_id == hashlib.md5(text.encode("utf-8")).hexdigest()
    assert segment_id("ckw", "L1", "overhead_bare", "Sursee") == md5_hex(
        "ckw|ac_line_segment|L1|overhead_bare|Sursee"
    )
    subs = mv_build.shapes[mv_build.shapes["asset_type"] == "substation"]
    assert all(
        s == substation_segment_id("oberrhein_mv", a) for s, a in zip(subs["segment_id"], subs["asset_key"])
    )
    assert mv_build.shapes["segment_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert mv_build.shapes["segment_id"].is_unique


def test_dso_id_alias_enters_the_id(mv_net):
    b = build_topology(mv_net, dso_id="ckw")
    r = b.shapes.iloc[0]
    assert r["segment_id"] == segment_id("ckw", r["line_name"], r["conductor_type"], r["municipality"])


def test_fragments_split_at_cell_borders_and_sum_to_lines(mv_net, mv_build):
    f = mv_build.fragments
    assert list(f.columns) == FRAGMENT_COLUMNS and f.crs.to_epsg() == 32632
    assert f["fragment_id"].is_unique
    assert (f["fragment_id"] == f["line_id"] + "/" + f["split_index"].astype(str)).all()
    # Pieces of a line add up to the line (UTM length), and each lies in its named cell.
    utm = reproject(mv_net.lines.geometry.to_numpy(), mv_net.crs, UTM32)
    line_len = pd.Series(shapely.length(utm), index=mv_net.lines["line_id"])
    summed = f.groupby("line_id")["length_m"].sum()
    assert np.allclose(summed.reindex(line_len.index), line_len, rtol=1e-9)
    assert mv_build.quality["fragments_split_lines"] > 0
    mid = shapely.line_interpolate_point(f.geometry.to_numpy(), 0.5, normalized=True)
    names = [
        f"cell E{np.floor(x / 2500) * 2.5:.1f} N{np.floor(y / 2500) * 2.5:.1f}"
        for x, y in zip(shapely.get_x(mid), shapely.get_y(mid))
    ]
    assert names == f["municipality"].tolist()
    b = shapely.bounds(f.geometry.to_numpy())
    cell_x = np.floor(shapely.get_x(mid) / 2500) * 2500
    assert np.all(b[:, 0] >= cell_x - 1e-6) and np.all(b[:, 2] <= cell_x + 2500 + 1e-6)


def test_fragment_ids_stable_across_builds(mv_net, mv_build):
    again = build_topology(mv_net)
    pd.testing.assert_frame_equal(
        pd.DataFrame(again.fragments.drop(columns="geometry")),
        pd.DataFrame(mv_build.fragments.drop(columns="geometry")),
    )
    assert shapely.equals_exact(
        again.fragments.geometry.to_numpy(), mv_build.fragments.geometry.to_numpy(), tolerance=0
    ).all()
    pd.testing.assert_frame_equal(
        pd.DataFrame(again.shapes.drop(columns="geom")), pd.DataFrame(mv_build.shapes.drop(columns="geom"))
    )


def test_equal_length_fragments_stay_distinct(lv_net):
    """Upstream keyed fragments by (line, municipality, conductor, length), which merged a
    parallel cable of equal length into one; here each keeps its own fragment."""
    lines = lv_net.lines
    twin = lines.iloc[[0]].copy()
    twin["line_id"] = "line:parallel"
    twin["geometry"] = shapely.affinity.translate(twin.geometry.iloc[0], xoff=0.0, yoff=1e-6)
    net = type(lv_net)(
        **{**lv_net.__dict__, "lines": gpd.GeoDataFrame(pd.concat([lines, twin]), crs=lines.crs)}
    )
    f = build_topology(net).fragments
    pair = f[f["line_name"] == lines["line_name"].iloc[0]]
    assert len(pair) == 2 and pair["fragment_id"].is_unique
    assert pair["length_m"].round(3).nunique() == 1 and pair["segment_id"].nunique() == 1


def test_segments_aggregate_fragments(lv_build):
    f, s = lv_build.fragments, lv_build.shapes
    lines = s[s["asset_type"] == "ac_line_segment"].set_index("segment_id")
    assert len(lines) == f["segment_id"].nunique() == lv_build.quality["segments"]
    assert np.allclose(f.groupby("segment_id")["length_m"].sum().reindex(lines.index), lines["length_m"])
    assert (
        f.groupby("segment_id")["feeder_id"].min().reindex(lines.index).fillna("~")
        == lines["feeder_id"].fillna("~")
    ).all()
    assert (lines["asset_key"] == lines["line_name"]).all()
    multi = f["segment_id"].value_counts()
    assert (multi > 1).any()  # lines sharing a name in one cell form one segment
    assert list(s.columns) == SHAPE_PROPERTIES + ["geom", "feature_geojson"]
    # Inputs absent: tree-strike and thermal attributes stay null.
    assert lines["strike_tree_tier"].isna().all() and lines["thermal_tier"].isna().all()
    assert lines["is_vegetated_zone"].isna().all() and lines["strike_km_high"].isna().all()


def test_null_key_component_excluded_and_counted(mv_net):
    net = mv_net
    lines = net.lines.copy()
    lines.loc[lines.index[:4], "line_name"] = None
    lines.loc[lines.index[4:6], "conductor_type"] = None
    broken = type(net)(**{**net.__dict__, "lines": gpd.GeoDataFrame(lines, crs=net.lines.crs)})
    b = build_topology(broken)
    q = b.quality
    missing = b.fragments["segment_id"].isna()
    assert q["fragments_without_segment_id"] == int(missing.sum()) > 0
    assert (
        q["fragments_null_key_component"]["line_name"] > 0
        and q["fragments_null_key_component"]["conductor_type"] > 0
    )
    assert not set(b.fragments.loc[missing, "line_id"]) & set(b.fragments.loc[~missing, "line_id"]), (
        "a line is keyed all or nothing"
    )
    assert b.shapes["segment_id"].notna().all()


def test_input_attributes_aggregate_per_spec(mv_build):
    """Tree-strike and thermal inputs, when present, aggregate as risk-model.md §2 says."""
    f = mv_build.fragments.copy()
    seg = f["segment_id"].value_counts().index[0]  # a segment with several fragments
    rows = f.index[f["segment_id"] == seg]
    assert len(rows) >= 2
    a, b = rows[0], rows[1]
    f.loc[a, ["strike_tree_tier", "strike_tree_multiplier", "strike_density_per_km", "is_vegetated_zone"]] = [
        "mid",
        1.2,
        4.0,
        True,
    ]
    f.loc[b, ["strike_tree_tier", "strike_tree_multiplier", "strike_density_per_km", "is_vegetated_zone"]] = [
        "high",
        1.4,
        8.0,
        False,
    ]
    f.loc[a, ["thermal_tier", "thermal_margin_c", "thermal_theta_max_c", "thermal_insulation"]] = [
        "low",
        3.0,
        70.0,
        "XLPE",
    ]
    f.loc[b, ["thermal_tier", "thermal_margin_c", "thermal_theta_max_c", "thermal_insulation"]] = [
        "mid",
        1.5,
        75.0,
        "PILC",
    ]
    out = aggregate_segments(f).set_index("segment_id").loc[seg]
    la, lb = f.loc[a, "length_m"], f.loc[b, "length_m"]
    total = f.loc[rows, "length_m"].sum()
    assert out["strike_tree_tier"] == "high" and out["strike_tree_multiplier"] == 1.4
    assert out["strike_density_per_km"] == pytest.approx((4.0 * la + 8.0 * lb) / total)
    assert out["strike_km_high"] == pytest.approx(lb / 1000) and out["strike_km_mid"] == pytest.approx(
        la / 1000
    )
    assert out["strike_km_low"] == 0 and out["is_vegetated_zone"] is True
    assert out["thermal_tier"] == "mid" and out["thermal_margin_c"] == 1.5
    assert out["thermal_theta_max_c"] == 70.0 and out["thermal_insulation"] == "PILC"
