"""Tree layers and tree-strike spans (exact geometry), P90 tables and configuration checks."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import shapely
from risk_builders import X0, Y0, fragments_frame, lonlat

from grid_platform.risk.climatology import config_table, p90_tables, resolve_p90
from grid_platform.risk.config import DEFAULT_PATH, load_config, parse_config
from grid_platform.risk.fragments import prepare_fragments
from grid_platform.risk.vegetation import (
    generate_trees,
    load_trees,
    tree_attributes,
    tree_strike_spans,
    with_tree_attributes,
)


def trees_at(points: list[tuple[float, float, float]], generated: bool = False) -> pd.DataFrame:
    geoms = np.array([shapely.Point(x, y) for x, y, _ in points])
    return pd.DataFrame({"tree_id": [f"t{i}" for i in range(len(points))], "height_m": [h for *_, h in points],
                         "generated": generated, "geom": shapely.to_wkb(geoms)})


@pytest.fixture(scope="module")
def frags():
    return prepare_fragments(fragments_frame([
        {"fragment_id": "a", "coords": [(X0, Y0), (X0 + 1000, Y0)]},
        {"fragment_id": "b", "coords": [(X0 + 1000, Y0), (X0 + 1000, Y0 + 1000), (X0 + 2000, Y0 + 1000)],
         "municipality": "Kriens"},
        {"fragment_id": "c", "coords": [(X0, Y0 + 50), (X0 + 1000, Y0 + 50)], "line_name": "K",
         "conductor_type": "underground_cable"},
    ]))


def test_span_is_the_exact_reach_chord(frags, cfg):
    # Tree 10 m beside fragment a at 200 m, 10 m tall: reach 13 m, half chord sqrt(13² - 10²).
    spans = tree_strike_spans(frags, trees_at([(X0 + 200, Y0 - 10, 10.0)]), cfg)
    assert len(spans) == 1
    s = spans.iloc[0]
    half = math.sqrt(13**2 - 10**2)
    assert s["fragment_id"] == "a" and s["length_m"] == pytest.approx(2 * half, abs=0.01)
    assert s["start_m"] == pytest.approx(200 - half, abs=0.01) and s["n_strike"] == 1
    geometry = json.loads(s["feature_geojson"])["geometry"]
    assert geometry["type"] == "LineString"
    assert s["tile_ids"] == ["tile_0_0"]


def test_overlapping_reaches_merge_and_far_trees_do_not_count(frags, cfg):
    trees = trees_at([(X0 + 100, Y0 + 5, 20.0), (X0 + 120, Y0 - 5, 20.0), (X0 + 500, Y0 + 30, 20.0),
                      (X0 + 800, Y0 + 27, 20.0)])  # third: 30 m > 26 m reach; fourth: 27 m > 26 m
    spans = tree_strike_spans(frags, trees, cfg)
    assert spans["n_strike"].tolist() == [2]
    assert spans["start_m"].iloc[0] == pytest.approx(100 - math.sqrt(26**2 - 5**2), abs=0.01)
    assert spans["end_m"].iloc[0] == pytest.approx(120 + math.sqrt(26**2 - 5**2), abs=0.01)


def test_spans_follow_bends_and_skip_cables(frags, cfg):
    # A tree at the bend of b reaches both of its straight pieces: one span around the corner.
    spans = tree_strike_spans(frags, trees_at([(X0 + 1005, Y0 + 995, 10.0), (X0 + 500, Y0 + 50, 30.0)]), cfg)
    by_fragment = spans.set_index("fragment_id")
    assert "c" not in by_fragment.index  # underground cable: no tree strike
    bend = by_fragment.loc["b"]
    assert bend["n_strike"] == 1 and bend["length_m"] > 2 * 13 * 0.7
    assert shapely.from_wkb(bend["geom"]).coords[:][1] == pytest.approx((X0 + 1000, Y0 + 1000))


def test_tiers_from_tree_density_and_inputs_win(frags, cfg):
    # 30 strike trees along the 1 km fragment a: 30 per km -> high; 1 tree on b (2 km) -> low.
    trees = trees_at([(X0 + 15 + 30 * i, Y0 + 5, 12.0) for i in range(30)] + [(X0 + 1500, Y0 + 1005, 12.0)])
    attributes = tree_attributes(frags, trees, cfg).set_index("fragment_id")
    assert attributes.loc["a", "strike_tree_tier"] == "high" and attributes.loc["a", "strike_tree_multiplier"] == 1.5
    assert attributes.loc["b", "strike_tree_tier"] == "low" and attributes.loc["b", "strike_density_per_km"] == 0.5
    with_inputs = replace(frags, frame=frags.frame.assign(strike_tree_tier=["mid", None, None]))
    filled = with_tree_attributes(with_inputs, tree_attributes(frags, trees, cfg)).frame.set_index("fragment_id")
    assert filled.loc["a", "strike_tree_tier"] == "mid" and filled.loc["b", "strike_tree_tier"] == "low"
    assert filled.loc["a", "is_vegetated_zone"] and not filled.loc["c", "is_vegetated_zone"]


def test_generated_layer_is_reproducible_and_marked(frags, cfg):
    first = generate_trees(frags, "ckw", cfg)
    again = generate_trees(frags, "ckw", cfg)
    other = generate_trees(frags, "other-dso", cfg)
    pd.testing.assert_frame_equal(first, again)
    assert not first[["height_m", "lon"]].equals(other[["height_m", "lon"]])
    assert len(first) > 0 and first["generated"].all()
    assert first["height_m"].between(3, 35).all()
    assert first["tree_id"].str.startswith("ckw-gen-").all()
    # Trees stand beside the overhead lines only (within 45 m), never along the cable alone.
    points = shapely.from_wkb(first["geom"].to_numpy())
    overhead = shapely.union_all(frags.geoms[:2])
    assert (shapely.distance(points, overhead) <= cfg.tree_strike.lateral_max_m + 1e-6).all()
    spans = tree_strike_spans(frags, first, cfg)
    assert spans["generated"].all() and (spans["length_m"] > 0).all()
    assert spans["span_id"].is_unique and spans["span_id"].is_monotonic_increasing


def test_load_trees_from_geojson(tmp_path, cfg, frags):
    lon, lat = lonlat(X0 + 200, Y0 - 10)
    path = tmp_path / "trees.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
         "properties": {"tree_id": "oak-1", "height": 10.0}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
         "properties": {"tree_id": "bad", "height": None}},
    ]}))
    trees = load_trees(path)
    assert trees["tree_id"].tolist() == ["oak-1"] and not trees["generated"].any()
    spans = tree_strike_spans(frags, trees, cfg)
    assert spans["length_m"].iloc[0] == pytest.approx(2 * math.sqrt(13**2 - 10**2), abs=0.05)


def test_p90_tables_both_available(cfg, try_dir):
    tables = p90_tables(cfg, try_dir)
    configured = tables["config"].set_index(["altitude_band", "month"])["p90_c"]
    assert configured[("low", 7)] == 27 and configured[("high", 9)] == 15 and len(configured) == 15
    computed = tables["dwd_try2010"].set_index(["altitude_band", "month"])
    assert (computed["source"] == "dwd_try2010").all()
    assert computed.loc[("high", 7), "stations"] == "Fichtelberg"
    assert computed.loc[("low", 7), "n_stations"] == 9 and computed.loc[("mid", 7), "n_stations"] == 5
    assert computed.loc[("low", 7), "p90_c"] > computed.loc[("mid", 7), "p90_c"] > computed.loc[("high", 7), "p90_c"]
    unchanged, source = resolve_p90(cfg, try_dir)
    assert source == "config" and unchanged is cfg
    chosen, source = resolve_p90(replace(cfg, heat=replace(cfg.heat, p90_source="dwd_try2010")),
                                 table=tables["dwd_try2010"])
    assert source == "dwd_try2010" and chosen.heat.p90_c["high"][7] == computed.loc[("high", 7), "p90_c"]
    assert set(chosen.heat.p90_c["low"]) == {5, 6, 7, 8, 9}  # the heat season stays May-Sep


def test_config_is_validated():
    import yaml
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    assert load_config().wind.alert_gust_excess_ms == 12.46 and len(config_table(load_config())) == 15
    bad = {**raw, "wind": {**raw["wind"], "warning_gust_excess_ms": 13.0}}
    with pytest.raises(ValueError, match="warning < alert"):
        parse_config(bad)
    with pytest.raises(ValueError, match="p90_source"):
        parse_config({**raw, "heat": {**raw["heat"], "p90_source": "guess"}})
    with pytest.raises(ValueError, match="missing or malformed"):
        parse_config({k: v for k, v in raw.items() if k != "trendline"})
