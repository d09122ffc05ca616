"""A whole risk run on a small synthetic network with controlled weather, then publication
and a second run continuing the history (risk-model.md §3-§11, docs/publications.md)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pandas as pd
import pytest
import shapely
from risk_builders import TZ, X0, Y0, fragments_frame, hourly_frame, lonlat

from grid_platform.publish import current
from grid_platform.risk.assess import SoilDataStale
from grid_platform.risk.matching import match_by_date, nearest_points, to_utm
from grid_platform.risk.pipeline import run_risk
from grid_platform.risk.publication import load_previous, publish_risk
from grid_platform.risk.tables import alert_distribution

TODAY = date(2026, 7, 14)
NOW = datetime(2026, 7, 14, 10, 30, tzinfo=UTC)
FAR_X = X0 + 20_000  # no weather point within 5 km


def network() -> pd.DataFrame:
    return fragments_frame([
        # L1 in Luzern near point A: one fragment in high tree-strike tier, one without tier.
        {"fragment_id": "f1", "coords": [(X0 + 50, Y0), (X0 + 450, Y0)], "strike_tree_tier": "high"},
        {"fragment_id": "f2", "coords": [(X0 + 450, Y0), (X0 + 1450, Y0)]},
        # L1 continues into Kriens, near the calm point B, in another operational unit.
        {"fragment_id": "f3", "coords": [(X0 + 3000, Y0 + 100), (X0 + 3600, Y0 + 100)], "municipality": "Kriens",
         "operational_unit": "Sued", "parent_substation_name": "UW B"},
        # An underground cable near A (heat), high thermal tier.
        {"fragment_id": "f4", "coords": [(X0, Y0 + 200), (X0 + 800, Y0 + 200)], "line_name": "L2",
         "conductor_type": "underground_cable", "thermal_tier": "high"},
        # An overhead line 20 km away: no weather within reach.
        {"fragment_id": "f5", "coords": [(FAR_X, Y0), (FAR_X + 500, Y0)], "line_name": "L3"},
    ])


def weather(first: date = date(2026, 7, 13), days: int = 5) -> pd.DataFrame:
    gusty = hourly_frame("A", X0, Y0, first, days, speed=6.0, gust=14.0, temp=lambda t: 20 + 12 * (t.hour == 15))
    calm = hourly_frame("B", X0 + 3000, Y0, first, days, speed=3.0, gust=5.0, temp=18.0)
    return pd.concat([gusty, calm], ignore_index=True)


@pytest.fixture(scope="module")
def run(cfg):
    return run_risk(network(), weather(), network_id="ckw", today=TODAY, now=NOW, local_tz=TZ, cfg=cfg)


def rows(frame: pd.DataFrame, **where) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in where.items():
        mask &= (pd.to_datetime(frame[column]) == pd.Timestamp(value)).to_numpy() if column == "date" \
            else (frame[column] == value).to_numpy()
    return frame[mask]


def test_fragment_daily_levels(run):
    d = run.fragment_risk_daily
    assert sorted(pd.to_datetime(d["date"]).dt.date.unique()) == [date(2026, 7, 14), date(2026, 7, 15),
                                                                  date(2026, 7, 16)]
    wind = rows(d, date="2026-07-14", risk_vector="wind").set_index("fragment_id")
    assert wind["risk_level"].to_dict() == {"f1": "ALERT", "f2": "WARNING", "f3": "NORMAL", "f5": None}
    assert wind["escalated_by_tree_strike"].to_dict() == {"f1": True, "f2": False, "f3": False, "f5": False}
    assert wind.loc["f1", "gust_excess"] == 8.0 and wind.loc["f1", "point_id"] == "A"
    assert wind.loc["f5", "risk_color_hex"] == "#808080" and np.isnan(wind.loc["f5", "point_distance_m"])
    assert wind.loc["f1", "risk_color_hex"] == "#D00000" and wind.loc["f2", "risk_color_hex"] == "#F7D000"
    heat = rows(d, risk_vector="heat").set_index("date")
    assert list(heat["fragment_id"].unique()) == ["f4"]  # heat only on cables, wind never on cables
    # 13 Jul (history from the same weather) is day 1 of the 32 °C run.
    assert heat["consecutive_heat_days"].tolist() == [2, 3, 4]
    assert heat["risk_level"].tolist() == ["WARNING", "ALERT", "ALERT"]
    assert heat["p90_threshold"].tolist() == [27.0, 27.0, 27.0] and (heat["altitude_band"] == "low").all()
    feature = json.loads(wind.loc["f1", "feature_geojson"])
    assert feature["type"] == "Feature" and feature["geometry"]["type"] == "LineString"
    lon, lat = feature["geometry"]["coordinates"][0]
    assert 8.0 < lon < 8.6 and 46.8 < lat < 47.3


def test_grid_risks_collapse_worst_first(run):
    r = rows(run.risks, date="2026-07-14").set_index("risk_vector")
    frags = network().set_index("fragment_id")
    wind = r.loc["wind"]
    assert wind["segment_id"] == frags.loc["f1", "segment_id"] and wind["risk_level"] == "ALERT"
    metrics = json.loads(wind["metrics"])
    assert metrics == {"gust_excess": 8.0, "wind_speed_max": 6.0, "wind_gusts_max": 14.0, "strike_tree_tier": "high",
                       "strike_tree_multiplier": None, "strike_density_per_km": None, "escalated_by_tree_strike": True}
    heat = json.loads(r.loc["heat", "metrics"])
    assert heat == {"temp_max_c": 32.0, "p90_threshold": 27.0, "consecutive_heat_days": 2, "altitude_band": "low",
                    "forecast_model": "test"}
    assert set(run.risks["risk_level"]) <= {"ALERT", "WARNING"}
    assert run.risks.columns.tolist() == ["segment_id", "date", "risk_vector", "risk_level", "risk_color_hex",
                                          "metrics"]


def test_risks_8h_and_now(run, cfg):
    w = rows(run.risks_8h, date="2026-07-14")
    assert w["slot"].tolist() == [0, 0, 1, 1, 2, 2]
    assert w["window_start"].tolist()[::2] == ["2026-07-14T00:00:00", "2026-07-14T08:00:00", "2026-07-14T16:00:00"]
    assert set(rows(w, risk_vector="heat")["risk_level"]) == {"WARNING"}
    assert set(rows(w, risk_vector="wind")["risk_level"]) == {"ALERT"}
    # 12:30 local: latest wind reading 12:00 local (10:00 UTC); today's Tmax so far is 20 °C,
    # so heat is NORMAL and dropped from the nowcast.
    now = run.risks_now.set_index("risk_vector")
    assert list(now.index) == ["wind"] and now.loc["wind", "risk_level"] == "ALERT"
    assert now.loc["wind", "observed_at"] == pd.Timestamp("2026-07-14 10:00", tz="UTC")
    assert (pd.to_datetime(run.risks_now["date"]) == pd.Timestamp(TODAY)).all()
    # 16:30 local: the 15 h reading of 32 °C is in; with 13 Jul stressed it is day 2 -> WARNING.
    later = run_risk(network(), weather(), network_id="ckw", today=TODAY, local_tz=TZ, cfg=cfg,
                     now=datetime(2026, 7, 14, 14, 30, tzinfo=UTC)).risks_now.set_index("risk_vector")
    assert later.loc["heat", "risk_level"] == "WARNING"
    assert json.loads(later.loc["heat", "metrics"])["consecutive_heat_days"] == 2
    assert later.loc["heat", "observed_at"] == pd.Timestamp("2026-07-14 14:00", tz="UTC")
    # No reading within the last 3 hours: no wind nowcast.
    stale = run_risk(network(), weather(), network_id="ckw", today=TODAY, local_tz=TZ, cfg=cfg,
                     now=datetime(2026, 7, 20, 12, 0, tzinfo=UTC)).risks_now
    assert "wind" not in set(stale["risk_vector"])


def test_segment_id_consistent_across_tables(run):
    frags = network()
    line_segments = set(frags["segment_id"])
    km = run.risk_km[run.risk_km["level"] == "tratta"]
    for table in (run.risks, run.risks_8h, run.risks_now, km):
        assert set(table["segment_id"]) <= line_segments
    alert_seg = frags.loc[frags["fragment_id"] == "f1", "segment_id"].iloc[0]
    for table in (run.risks, run.risks_8h, run.risks_now, km):
        assert alert_seg in set(table["segment_id"])
    # segment_id is the md5 of the segment key (risk-model §2).
    assert alert_seg == hashlib.md5(b"ckw|ac_line_segment|L1|overhead_bare|Luzern").hexdigest()


def test_risk_km_parts_sum_index_and_rollups(run):
    km = run.risk_km
    parts = km["km_alert"] + km["km_warning"] + km["km_normal"]
    assert np.allclose(parts, km["km_total"], atol=1e-6)
    assert km["risk_index"].dropna().between(0, 100).all()
    tratta = rows(km, level="tratta", date="2026-07-14", risk_vector="wind").set_index("municipality")
    # f5 (no weather) is excluded from the km: only Luzern (f1 + f2) and Kriens (f3).
    assert set(tratta.index) == {"Luzern", "Kriens"}
    assert tratta.loc["Luzern", "n_fragments"] == 2 and tratta.loc["Luzern", "km_total"] == pytest.approx(1.4)
    assert tratta.loc["Luzern", "km_alert"] == pytest.approx(0.4) and tratta.loc["Luzern", "km_escalated"] == pytest.approx(0.4)
    assert tratta.loc["Luzern", "km_tree_high"] == pytest.approx(0.4)
    assert tratta.loc["Luzern", "risk_index"] == round(100 * (0.4 + 0.5 * 1.0) / 1.4, 2)
    line = rows(km, level="line", date="2026-07-14", risk_vector="wind").set_index("line_name").loc["L1"]
    # Index from the sums (0.4 alert + 0.5 * 1.0 warning over 2.0 km), not the mean of 64.29 and 0.
    assert line["risk_index"] == 45.0 and line["km_total"] == pytest.approx(2.0)
    assert line["operational_units"] == "Nord,Sued" and line["n_units"] == 2 and line["n_tratte"] == 2
    assert line["worst_level"] == "ALERT" and line["metric_max"] == 8.0
    unit = rows(km, level="unit", date="2026-07-14", risk_vector="wind").set_index("operational_unit")
    assert unit.loc["Sued", "risk_index"] == 0.0 and unit.loc["Nord", "n_lines"] == 1
    heat = rows(km, level="unit", date="2026-07-15", risk_vector="heat").iloc[0]
    assert heat["km_thermal_high"] == pytest.approx(0.8) and heat["km_tree_high"] == 0.0


def test_trendline_same_conductor_class(run):
    t = run.trendline.set_index(["risk_vector"])
    day = rows(run.trendline, date="2026-07-14").set_index("risk_vector")
    # Wind class: 3 overhead segments (L1 Luzern, L1 Kriens, L3); 1 at ALERT.
    assert day.loc["wind", ["alert_count", "warning_count", "total_segments"]].tolist() == [1, 0, 3]
    assert day.loc["wind", "risk_ratio"] == 0.3333 and day.loc["wind", "day_risk_level"] == "NORMAL"
    assert day.loc["heat", "total_segments"] == 1 and day.loc["heat", "day_risk_level"] == "ALERT"
    assert len(t) == 6


def test_trend_is_network_scoped(run):
    trend = run.trend.set_index(["risk_vector", "date"])["value"]
    assert trend.loc[("wind", pd.Timestamp("2026-07-14"))] == 8.0
    assert trend.loc[("heat", pd.Timestamp("2026-07-13"))] == 32.0
    assert np.isnan(trend.loc[("heat", pd.Timestamp("2026-07-11"))])  # before the weather starts
    assert len(trend) == 4 + 6


def test_alert_distribution_defaults_to_the_horizon(run, cfg):
    items = alert_distribution(run.fragment_risk_daily, "wind", cfg, today=TODAY)
    # f5 (not assessed) is not counted; equal counts list the worse level first.
    assert items == [{"risk_level": "ALERT", "events": 3}, {"risk_level": "WARNING", "events": 3},
                     {"risk_level": "NORMAL", "events": 3}]
    one_unit = alert_distribution(run.fragment_risk_daily, "wind", cfg, today=TODAY, operational_unit=["Sued"],
                                  dates=[date(2026, 7, 14)])
    assert one_unit == [{"risk_level": "NORMAL", "events": 1}]


def test_summary(run):
    s = run.summary
    assert s["dates"] == ["2026-07-14", "2026-07-15", "2026-07-16"] and len(s["vectors"]) == 6
    wind = next(v for v in s["vectors"] if v["risk_vector"] == "wind" and v["date"] == "2026-07-14")
    assert wind["risk_index"] == 45.0 and wind["km_total"] == pytest.approx(2.0) and wind["alert_count"] == 1


def test_no_point_within_5km_is_null_and_4999_matched(cfg):
    lon, lat = lonlat(X0, Y0)
    points = pd.DataFrame({"point_id": ["P"], "lat": [lat], "lon": [lon]})
    geoms = np.array([shapely.LineString([(X0 + d, Y0), (X0 + d, Y0 + 300)]) for d in (4999.0, 5000.0, 5001.0)])
    found = nearest_points(geoms, points, cfg.forecast_max_distance_m)
    assert found["geom_index"].tolist() == [0, 1]
    assert found["distance_m"].round(3).tolist() == [4999.0, 5000.0]


def test_ties_break_on_lat_lon(cfg):
    a, b = lonlat(X0, Y0), lonlat(X0 + 1000, Y0 + 1000)
    points = pd.DataFrame({"point_id": ["north_east", "south_west"], "lat": [b[1], a[1]], "lon": [b[0], a[0]]})
    xs, ys = to_utm(points["lon"].to_numpy(), points["lat"].to_numpy())
    line = shapely.LineString([(xs[0], ys[0]), (xs[1], ys[1])])  # passes through both points: distance 0 to each
    for order in ([0, 1], [1, 0]):
        found = nearest_points(np.array([line]), points.iloc[order].reset_index(drop=True), 5000)
        assert found["point_id"].tolist() == ["south_west"]


def test_matching_per_date_uses_that_dates_points(cfg):
    lon_a, lat_a = lonlat(X0, Y0)
    lon_b, lat_b = lonlat(X0 + 2000, Y0)
    days = pd.DataFrame({"point_id": ["A", "B", "B"], "lat": [lat_a, lat_b, lat_b], "lon": [lon_a, lon_b, lon_b],
                         "date": pd.to_datetime(["2026-07-14", "2026-07-14", "2026-07-15"])})
    geoms = np.array([shapely.Point(X0 + 100, Y0)])
    m = match_by_date(geoms, days, 5000).sort_values("date")
    assert m["point_id"].tolist() == ["A", "B"]


def test_publication_files_types_and_second_run(run, cfg, tmp_path):
    pub = publish_risk(tmp_path, run, cfg)
    expected = {"risks.parquet", "risks_8h.parquet", "risks_now.parquet", "fragment_risk_daily.parquet",
                "risk_km.parquet", "trendline.parquet", "trend.parquet", "tree_strike_spans.parquet",
                "maps/2026-07-14.geojson", "maps/2026-07-15.geojson", "maps/2026-07-16.geojson"}
    assert expected <= set(pub.files)
    con = duckdb.connect()

    def types(name: str) -> dict[str, str]:
        return {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{pub.file(name)}')").fetchall()}

    assert types("risks.parquet")["date"] == "DATE" and types("risks.parquet")["metrics"] == "VARCHAR"
    assert types("risks_now.parquet")["observed_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types("risks_8h.parquet")["window_start"] == "VARCHAR"
    assert types("fragment_risk_daily.parquet")["consecutive_heat_days"] == "BIGINT"
    n = con.execute(f"SELECT count(*) FROM read_parquet('{pub.file('fragment_risk_daily.parquet')}') "
                    "WHERE date = DATE '2026-07-15'").fetchone()[0]
    fc = json.loads(pub.file("maps/2026-07-15.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == n == 5
    paint = {f["properties"]["fragment_id"]: f["properties"]["map_color_hex"] for f in fc["features"]}
    assert paint["f5"] == "#6b7280" and paint["f3"] == "#6b7280" and paint["f1"] == "#D00000"
    manifest = json.loads(pub.file("manifest.json").read_text())
    assert manifest["extra"]["p90_source"] == "config" and manifest["extra"]["quality"]["fragment_days_not_assessed"] == 3

    # Next day: the forecast starts on 15 Jul; the streak continues from the published history.
    previous = load_previous(current(tmp_path, "risk", "ckw"))
    second = run_risk(network(), weather(date(2026, 7, 15), 3), network_id="ckw", today=date(2026, 7, 15),
                      now=datetime(2026, 7, 15, 10, 30, tzinfo=UTC), local_tz=TZ, cfg=cfg, previous=previous)
    heat = rows(second.fragment_risk_daily, risk_vector="heat").set_index("date")["consecutive_heat_days"]
    assert heat.to_dict() == {pd.Timestamp("2026-07-14"): 2, pd.Timestamp("2026-07-15"): 3,
                              pd.Timestamp("2026-07-16"): 4, pd.Timestamp("2026-07-17"): 5}
    assert min(pd.to_datetime(second.risks["date"]).dt.date) == date(2026, 7, 14)  # history kept


def test_refresh_replaces_horizon_keeps_history(cfg):
    from grid_platform.risk.tables import merge_refresh
    old = pd.DataFrame({"k": ["a", "a", "a"], "date": pd.to_datetime(["2026-07-13", "2026-07-14", "2026-07-15"]),
                        "v": [1, 2, 3]})
    new = pd.DataFrame({"k": ["a", "a", "b"], "date": pd.to_datetime(["2026-07-13", "2026-07-14", "2026-07-13"]),
                        "v": [10, 20, 30]})
    out = merge_refresh(old, new, date(2026, 7, 14), ["k", "date"]).sort_values(["k", "date"])
    # 13 Jul keeps history (a) and gains the key history lacked (b); 14 Jul comes from the new run;
    # 15 Jul, no longer computed, is dropped with the old horizon.
    assert out[["k", "v"]].values.tolist() == [["a", 1], ["a", 20], ["b", 30]]


def test_two_axis_heat_model(cfg):
    lon, lat = lonlat(X0 + 500, Y0 + 500)
    soil = pd.DataFrame({"soil_point_id": "S", "lat": lat, "lon": lon,
                         "date": pd.date_range("2026-07-01", "2026-07-14"), "soil_temp_1m_c": 23.0})
    frags = network()
    low = fragments_frame([{"fragment_id": "f6", "coords": [(X0, Y0 + 300), (X0 + 100, Y0 + 300)],
                            "line_name": "L4", "conductor_type": "underground_cable", "thermal_tier": "low"}])
    joints = pd.DataFrame({"segment_id": ["j" * 32], "joint_id": ["J1"], "geom": [shapely.to_wkb(shapely.Point(X0, Y0))],
                           "thermal_tier": ["high"], "technology": ["resin"], "anno_posa": [1998],
                           "is_asphalt": [True], "m_r_critico": [2.5]})
    out = run_risk(pd.concat([frags, low], ignore_index=True), weather(), network_id="ckw", today=TODAY, now=NOW,
                   local_tz=TZ, cfg=cfg, soil=soil, joints=joints)
    heat = rows(out.fragment_risk_daily, risk_vector="heat")
    high = heat[heat["fragment_id"] == "f4"].set_index("date")
    # Soil ORANGE (mean 23 > 21.4832); air ORANGE on 14 Jul, RED from 15 Jul.
    assert high["heat_status"].tolist() == ["ORANGE", "RED", "RED"]
    assert high["risk_level"].tolist() == ["WARNING", "ALERT", "ALERT"]
    assert high["escalated_by_thermal"].all()
    assert heat[heat["fragment_id"] == "f6"]["risk_level"].tolist() == ["NORMAL", "WARNING", "WARNING"]
    metrics = json.loads(rows(out.risks, date="2026-07-15", segment_id=frags.loc[3, "segment_id"])["metrics"].iloc[0])
    assert metrics["heat_status"] == "RED" and metrics["soil_status"] == "ORANGE" and metrics["thermal_modelled"]
    assert metrics["soil7_mean_c"] == 23.0 and metrics["soil_asof_date"] == "2026-07-14"
    joint = json.loads(rows(out.risks, segment_id="j" * 32, date="2026-07-15")["metrics"].iloc[0])
    assert joint["asset_type"] == "joint" and joint["joint_id"] == "J1" and joint["m_r_critico"] == 2.5
    # Joints are not line segments: not in the trendline's heat counts.
    assert rows(out.trendline, date="2026-07-15", risk_vector="heat")["total_segments"].iloc[0] == 2
    assert out.quality["two_axis_heat_model"]
    # A soil feed that stopped more than 10 days ago is a freshness failure, not a silent "off".
    with pytest.raises(SoilDataStale):
        run_risk(frags, weather(), network_id="ckw", today=TODAY, now=NOW, local_tz=TZ, cfg=cfg,
                 soil=soil[soil["date"] < "2026-07-03"])


def test_run_without_weather_publishes_typed_empty_tables(cfg, tmp_path):
    from grid_platform.weather.quality import empty_hourly

    run = run_risk(network(), empty_hourly(), network_id="ckw", today=TODAY, now=NOW, local_tz=TZ, cfg=cfg)
    assert run.fragment_risk_daily["risk_level"].isna().all() and run.risks.empty and run.risk_km.empty
    pub = publish_risk(tmp_path, run, cfg)
    con = duckdb.connect()
    for name, column, kind in (("risks.parquet", "date", "DATE"), ("risks_now.parquet", "observed_at",
                               "TIMESTAMP WITH TIME ZONE"), ("risk_km.parquet", "risk_index", "DOUBLE"),
                               ("tree_strike_spans.parquet", "tile_ids", "VARCHAR[]"),
                               ("risks_8h.parquet", "slot", "BIGINT")):
        described = {r[0]: r[1] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{pub.file(name)}')").fetchall()}
        assert described[column] == kind, name
    assert json.loads(pub.file("maps/2026-07-14.geojson").read_text())["features"][0]["properties"][
        "risk_level"] is None
