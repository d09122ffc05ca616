"""Small, correctly-shaped publications (docs/publications.md) for the read-API tests.

Two networks' worth of topology and risk tables are written with pandas -> Parquet and
published through ``grid_platform.publish.publish``, exactly as the assets do. Values are
hand-picked so each route's filtering, ordering and aggregation can be asserted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pandas as pd
from pyproj import Transformer
from shapely import wkb
from shapely.geometry import LineString, Point, shape

from grid_platform.api.config import ApiConfig
from grid_platform.publish import Publication, publish
from grid_platform.settings import Settings, load_settings

TEST_SECRET = "grid-api-tests-secret-0123456789abcdef"
NETWORKS = ("ckw", "ewl")  # both published in the shared fixture; "ckw" is the default caller's


def local_today() -> date:
    return datetime.now(ZoneInfo("Europe/Zurich")).date()


TODAY = local_today()
D0, D1, D2, DM1 = (TODAY + timedelta(days=k) for k in (0, 1, 2, -1))


def make_settings(data_dir: Path, state_db_url: str | None = None) -> Settings:
    return dataclasses.replace(load_settings(), data_dir=data_dir,
                               state_db_url=state_db_url or f"sqlite:///{data_dir / 'state.db'}")


def make_config(**overrides: Any) -> ApiConfig:
    return ApiConfig(jwt_secret=TEST_SECRET, **overrides)


def sign(claims: dict[str, Any], secret: str = TEST_SECRET, expires_in: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + expires_in, **claims}, secret, algorithm="HS256")


def dso(*aliases: str, groups: tuple[str, ...] = ()) -> dict[str, Any]:
    return {a: {"id": f"id-{a}", "type": "dso", "attributes": {"type": ["dso"]}, "groups": list(groups)}
            for a in aliases}


def read_paths(network: str = "ckw") -> list[str]:
    """Every grid read route with valid parameters."""
    base = f"/api/grid/{network}"
    return [f"{base}/{p}" for p in (
        "wind/map", "wind/bosco", "wind/alert-distribution", "wind/trend", "heat/map",
        "heat/alert-distribution", "heat/trend", "substations/map", "filters", "summary", "tile-index",
        "shapes", "tree-strike-spans", f"risks?dates={D0}", "risks-now", f"risks-8h?dates={D0}",
        f"trendline?date_from={D0}&date_to={D1}", f"risk-km?dates={D0}")]

LV95 = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True)
COLORS = {"ALERT": "#D00000", "WARNING": "#F7D000", "NORMAL": "#00A000", None: "#808080"}


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def segment_id(dso: str, line: str, conductor: str, municipality: str) -> str:
    return md5(f"{dso}|ac_line_segment|{line}|{conductor}|{municipality}")


def _utm_wkb(geometry: dict) -> bytes:
    geom = shape(geometry)
    if isinstance(geom, Point):
        return wkb.dumps(Point(*LV95.transform(geom.x, geom.y)))
    return wkb.dumps(LineString([LV95.transform(x, y) for x, y in geom.coords]))


def _line(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "LineString", "coordinates": [[x0, y0], [x1, y1]]}


def _feature(geometry: dict, properties: dict | None = None) -> str:
    return json.dumps({"type": "Feature", "geometry": geometry, "properties": properties or {}})


# Segments of a network: (line, conductor, municipality, unit, substation, feeder, length_m, vegetated, tier)
LINES = [
    ("Linea Nord", "overhead_bare", "Sursee", "Sursee", "UW Sursee", "F1", 1200.0, True, "high"),
    ("Linea Sud", "overhead_insulated", "Emmen", "Emmen", "UW Emmen", "F2", 800.0, False, None),
    ("Kabel Ost", "underground_cable", "Emmen", "Emmen", "UW Emmen", "F3", 500.0, False, None),
]
GEOMETRY = {
    "Linea Nord": _line(8.10, 47.17, 8.14, 47.19),
    "Linea Sud": _line(8.28, 47.07, 8.30, 47.08),
    "Kabel Ost": _line(8.29, 47.06, 8.30, 47.06),
}
SHAPE_COLUMNS = [
    "segment_id", "asset_type", "asset_key", "line_name", "conductor_type", "parent_substation_name",
    "operational_unit", "municipality", "feeder_id", "length_m", "is_vegetated_zone", "strike_tree_tier",
    "strike_tree_multiplier", "strike_density_per_km", "strike_km_high", "strike_km_mid", "strike_km_low",
    "voltage_class", "label", "label_id", "name", "thermal_tier", "thermal_margin_c", "thermal_theta_max_c",
    "thermal_insulation", "is_asphalt", "anno_posa", "technology", "m_r_critico",
]


def _shape_row(**values: Any) -> dict:
    row = {c: None for c in SHAPE_COLUMNS}
    row.update(values)
    return row


def topology_tables(network: str) -> dict[str, Any]:
    shapes = []
    for line, conductor, muni, unit, sub, feeder, length, vegetated, tier in LINES:
        geometry = GEOMETRY[line]
        shapes.append(_shape_row(
            segment_id=segment_id(network, line, conductor, muni), asset_type="ac_line_segment",
            asset_key=line, line_name=line, conductor_type=conductor, parent_substation_name=sub,
            operational_unit=unit, municipality=muni, feeder_id=feeder, length_m=length,
            is_vegetated_zone=vegetated, strike_tree_tier=tier, strike_tree_multiplier=1.4 if tier else None,
            strike_density_per_km=8.1 if tier else None, strike_km_high=1.2 if tier else 0.0,
            strike_km_mid=0.0, strike_km_low=0.0, voltage_class="MV",
            thermal_tier="mid" if conductor == "underground_cable" else None,
            thermal_margin_c=4.5 if conductor == "underground_cable" else None,
            # properties inside the stored feature must be discarded for /shapes
            tile_ids=["tile_0_0", "tile_1_0"] if line == "Linea Nord" else ["tile_1_0"],
            feature_geojson=_feature(geometry, {"line_name": "FROM FEATURE"}), geom=_utm_wkb(geometry)))
    substation = {"type": "Point", "coordinates": [8.29, 47.07]}
    shapes.append(_shape_row(
        segment_id=md5(f"{network}|substation|S1"), asset_type="substation", asset_key="S1",
        name="UW Emmen", label="Unterwerk Emmen", label_id="UW-E", operational_unit="Emmen",
        municipality="Emmen", tile_ids=["tile_1_0"], feature_geojson=json.dumps(substation),  # bare geometry
        geom=_utm_wkb(substation)))
    joint = {"type": "Point", "coordinates": [8.295, 47.06]}
    shapes.append(_shape_row(
        segment_id=md5(f"{network}|joint|J1"), asset_type="joint", asset_key="J1", name="Giunto J1",
        thermal_tier="unmodelled", technology="heat-shrink", anno_posa=1998, is_asphalt=True,
        m_r_critico=0.8, municipality="Emmen", tile_ids=["tile_0_1"], feature_geojson=_feature(joint),
        geom=_utm_wkb(joint)))
    for name, feature in (("Linea Rotta", None), ("Linea Guasta", "{not json"),
                          ("Linea Vuota", json.dumps({"type": "Feature", "geometry": None}))):
        shapes.append(_shape_row(segment_id=segment_id(network, name, "overhead_bare", "Sursee"),
                                 asset_type="ac_line_segment", asset_key=name, line_name=name,
                                 conductor_type="overhead_bare", tile_ids=["tile_0_0"], feature_geojson=feature,
                                 geom=None))
    fragments = []
    for line, conductor, muni, unit, sub, feeder, length, vegetated, tier in LINES:
        for part in ("a", "b") if line == "Linea Nord" else ("a",):
            fragments.append({
                "fragment_id": f"{line}-{part}", "segment_id": segment_id(network, line, conductor, muni),
                "dso_id": network, "network_id": network, "line_name": line, "conductor_type": conductor,
                "municipality": muni, "operational_unit": unit, "parent_substation_name": sub,
                "feeder_id": feeder, "length_m": 700.0 if part == "a" and line == "Linea Nord" else length,
                "voltage_kv": 16.0, "geometry_source": "cim", "geom": _utm_wkb(GEOMETRY[line])})
    substations = pd.DataFrame([{
        "asset_id": "S1", "name": "UW Emmen", "label_id": "UW-E", "label": "Unterwerk Emmen",
        "line_name": None, "feeder_id": None, "parent_substation_name": None, "operational_unit": "Emmen",
        "municipality": "Emmen", "longitude": 8.29, "latitude": 47.07,
        "feature_geojson": _feature(substation, {"label": "Unterwerk Emmen — Emmen"})}, {
        "asset_id": "S0", "name": "UW Adligenswil", "label_id": "UW-A", "label": "Unterwerk A",
        "line_name": None, "feeder_id": None, "parent_substation_name": None, "operational_unit": "Sursee",
        "municipality": "Adligenswil", "longitude": 8.36, "latitude": 47.07, "feature_geojson": None}])
    tiles = pd.DataFrame([
        {"tile_id": f"tile_{x}_{y}", "tile_x": x, "tile_y": y, "segment_count": n,
         "tile_bbox_geojson": json.dumps({"type": "Polygon", "coordinates": [[[8.0 + x / 10, 47.0 + y / 10]] * 4]})}
        for x, y, n in ((1, 0, 3), (0, 0, 4), (0, 1, 1))])
    filters = {"parent_substations": ["UW Emmen", "UW Sursee"], "lines": ["Kabel Ost", "Linea Nord", "Linea Sud"],
               "operational_units": ["Emmen", "Sursee"], "municipalities": ["Emmen", "Sursee"],
               "extent_min_lng": 8.10, "extent_min_lat": 47.06, "extent_max_lng": 8.30, "extent_max_lat": 47.19}
    return {
        "shapes.parquet": pd.DataFrame(shapes),
        "fragments.parquet": pd.DataFrame(fragments),
        "substations.parquet": substations,
        "tile_index.parquet": tiles.sort_values(["tile_y", "tile_x"]),
        "filters.json": filters,
    }


def _metrics(vector: str, level: str) -> str:
    if vector == "wind":
        return json.dumps({"gust_excess": 13.0 if level == "ALERT" else 8.0, "wind_speed_max": 11.2,
                           "wind_gusts_max": 24.2, "strike_tree_tier": "high", "strike_tree_multiplier": 1.4,
                           "strike_density_per_km": 8.1, "escalated_by_tree_strike": False})
    return json.dumps({"temp_max_c": 29.5, "p90_threshold": 27.0, "consecutive_heat_days": 2,
                       "altitude_band": "low", "forecast_model": "icon_d2"})


def risk_tables(network: str, today: date) -> dict[str, Any]:
    d = [today + timedelta(days=k) for k in range(-1, 3)]  # yesterday .. today+2
    yesterday, day0, day1, day2 = d
    nord = segment_id(network, "Linea Nord", "overhead_bare", "Sursee")
    ost = segment_id(network, "Kabel Ost", "underground_cable", "Emmen")

    # Daily fragment table: (fragment, date, vector, level)
    levels = [
        ("Linea Nord-a", day0, "wind", "ALERT"), ("Linea Nord-b", day0, "wind", "WARNING"),
        ("Linea Sud-a", day0, "wind", "NORMAL"), ("Kabel Ost-a", day0, "heat", "WARNING"),
        ("Linea Nord-a", day1, "wind", "WARNING"), ("Linea Nord-b", day1, "wind", "NORMAL"),
        ("Linea Sud-a", day1, "wind", None), ("Kabel Ost-a", day1, "heat", "NORMAL"),
        ("Linea Nord-a", yesterday, "wind", "NORMAL"), ("Linea Nord-a", day2, "wind", "ALERT"),
    ]
    by_line = {line: rest for line, *rest in LINES}
    daily = []
    for fragment, day, vector, level in levels:
        line = fragment.rsplit("-", 1)[0]
        conductor, muni, unit, sub, feeder, length, vegetated, _tier = by_line[line]
        props = {"municipality": "Sursee LU"} if fragment == "Linea Nord-a" else {}
        daily.append({
            "fragment_id": fragment, "segment_id": segment_id(network, line, conductor, muni),
            "dso_id": network, "network_id": network, "line_name": line, "conductor_type": conductor,
            "municipality": muni, "operational_unit": unit, "parent_substation_name": sub, "feeder_id": feeder,
            "length_m": 700.0 if fragment == "Linea Nord-a" else (500.0 if line == "Linea Nord" else length),
            "date": day, "risk_vector": vector, "risk_level": level, "risk_color_hex": COLORS[level],
            "gust_excess": {"ALERT": 13.0, "WARNING": 8.0, "NORMAL": 3.0, None: None}[level] if vector == "wind" else None,
            "wind_speed_max": 11.2 if vector == "wind" and level else None,
            "wind_gusts_max": 24.2 if vector == "wind" and level else None,
            "temp_max_c": 29.5 if vector == "heat" else None, "p90_threshold": 27.0 if vector == "heat" else None,
            "consecutive_heat_days": (2 if level == "WARNING" else 0) if vector == "heat" else None,
            "altitude_band": "low" if vector == "heat" else None, "forecast_model": "icon_d2",
            "escalated_by_tree_strike": False, "is_vegetated_zone": vegetated,
            "elevation_start_m": 500.0, "elevation_end_m": 520.0,
            "feature_geojson": _feature(GEOMETRY[line], props)})
    daily_df = pd.DataFrame(daily)
    daily_df["consecutive_heat_days"] = daily_df["consecutive_heat_days"].astype("Int64")

    risk_rows = [(nord, day0, "wind", "ALERT"), (ost, day0, "heat", "WARNING"), (nord, day1, "wind", "WARNING"),
                 (nord, day2, "wind", "ALERT")]
    risks = pd.DataFrame([{"segment_id": s, "date": day, "risk_vector": v, "risk_level": lvl,
                           "risk_color_hex": COLORS[lvl], "metrics": _metrics(v, lvl)} for s, day, v, lvl in risk_rows])
    risks_8h = pd.DataFrame([
        {"segment_id": s, "date": day, "risk_vector": v, "risk_level": lvl, "risk_color_hex": COLORS[lvl],
         "metrics": _metrics(v, lvl), "window_start": f"{day.isoformat()}T{8 * slot:02d}:00:00", "slot": slot}
        for s, day, v, lvl, slot in [(nord, day0, "wind", "WARNING", 0), (nord, day0, "wind", "ALERT", 1),
                                     (ost, day0, "heat", "WARNING", 0), (ost, day0, "heat", "WARNING", 1),
                                     (ost, day0, "heat", "WARNING", 2), (nord, day1, "wind", "WARNING", 2)]])
    observed = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    risks_now = pd.DataFrame([{"segment_id": nord, "date": day0, "risk_vector": "wind", "risk_level": "WARNING",
                               "risk_color_hex": COLORS["WARNING"], "metrics": _metrics("wind", "WARNING"),
                               "observed_at": pd.Timestamp(observed)}])

    def km(day, vector, unit, line, muni, conductor, total, alert, warning, escalated=0.0, metric=None):
        normal = round(total - alert - warning, 3)
        worst = "ALERT" if alert else ("WARNING" if warning else "NORMAL")
        return {"date": day, "risk_vector": vector, "level": "tratta", "operational_unit": unit, "line_name": line,
                "municipality": muni, "conductor_type": conductor, "segment_id": segment_id(network, line, conductor, muni),
                "parent_substation_name": by_line[line][3], "feeder_id": by_line[line][4],
                "n_fragments": 2 if line == "Linea Nord" else 1, "km_total": total, "km_alert": alert,
                "km_warning": warning, "km_normal": normal, "km_escalated": escalated,
                "km_tree_high": total if line == "Linea Nord" else 0.0, "km_tree_mid": 0.0,
                "km_thermal_high": 0.0, "km_thermal_mid": total if vector == "heat" else 0.0,
                "metric_max": metric, "worst_level": worst,
                "risk_index": round(100 * (alert + 0.5 * warning) / total, 2) if total else None,
                "operational_units": None, "n_units": None, "n_tratte": None, "n_lines": None}

    tratta = [
        km(day0, "wind", "Sursee", "Linea Nord", "Sursee", "overhead_bare", 1.2, 0.7, 0.5, metric=13.0),
        km(day0, "wind", "Emmen", "Linea Sud", "Emmen", "overhead_insulated", 0.8, 0.0, 0.0, metric=3.0),
        km(day0, "heat", "Emmen", "Kabel Ost", "Emmen", "underground_cable", 0.5, 0.0, 0.5, metric=29.5),
        km(day1, "wind", "Sursee", "Linea Nord", "Sursee", "overhead_bare", 1.2, 0.0, 0.7, metric=8.0),
        km(day1, "heat", "Emmen", "Kabel Ost", "Emmen", "underground_cable", 0.5, 0.0, 0.0, metric=25.0),
    ]
    # Published rollups (the API aggregates from the tratta rows itself; these must not leak in).
    rollups = [{**row, "level": "unit", "line_name": None, "municipality": None, "conductor_type": None,
                "segment_id": None, "n_fragments": None, "n_tratte": 1, "n_lines": 1} for row in tratta]
    risk_km = pd.DataFrame(tratta + rollups)

    def trend_row(day, vector, alert, warning, total):
        ratio = round((alert + warning) / total, 4) if total else None
        level = "NORMAL" if ratio is None or ratio <= 0.35 else ("WARNING" if ratio <= 0.65 else "ALERT")
        return {"date": day, "risk_vector": vector, "alert_count": alert, "warning_count": warning,
                "total_segments": total, "risk_ratio": ratio, "day_risk_level": level}

    trendline = pd.DataFrame([
        trend_row(yesterday, "wind", 0, 0, 2), trend_row(day0, "heat", 0, 1, 1), trend_row(day0, "wind", 1, 0, 2),
        trend_row(day1, "heat", 0, 0, 1), trend_row(day1, "wind", 0, 1, 2), trend_row(day2, "wind", 1, 0, 2),
    ])
    trend = pd.DataFrame(
        [{"risk_vector": "wind", "date": day, "value": v} for day, v in ((yesterday, 3.0), (day0, 13.0), (day1, 8.0))]
        + [{"risk_vector": "heat", "date": today + timedelta(days=k), "value": 24.0 + k} for k in range(-3, 3)])
    spans = pd.DataFrame([
        {"span_id": sid, "line_name": "Linea Nord", "municipality": "Sursee", "operational_unit": "Sursee",
         "parent_substation_name": "UW Sursee", "feeder_id": "F1", "conductor_type": "overhead_bare",
         "tier": tier, "multiplier": 1.4, "strike_density_km": 8.1, "n_strike": n, "length_m": 120.0,
         "tile_ids": tiles, "feature_geojson": geometry}
        for sid, tier, n, tiles, geometry in (
            ("span-002", "high", 4, ["tile_1_0"], _feature(_line(8.12, 47.18, 8.13, 47.18), {"tier": "x"})),
            ("span-001", "mid", 2, ["tile_0_0"], _feature(_line(8.10, 47.17, 8.11, 47.17))),
            ("span-003", "low", 1, ["tile_0_0"], None))])
    return {
        "risks.parquet": risks, "risks_8h.parquet": risks_8h, "risks_now.parquet": risks_now,
        "fragment_risk_daily.parquet": daily_df, "risk_km.parquet": risk_km, "trendline.parquet": trendline,
        "trend.parquet": trend, "tree_strike_spans.parquet": spans,
    }


def write_tables(tables: dict[str, Any]):
    def write(directory: Path) -> None:
        for name, table in tables.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(table, pd.DataFrame):
                table.to_parquet(path, index=False)
            else:
                path.write_text(json.dumps(table))
    return write


def publish_topology(root: Path, network: str, replace: dict[str, Any] | None = None) -> Publication:
    tables = {**topology_tables(network), **(replace or {})}
    return publish(root, "topology", network, write_tables(tables))


def publish_risk(root: Path, network: str, today: date, replace: dict[str, Any] | None = None) -> Publication:
    tables = {**risk_tables(network, today), **(replace or {})}
    return publish(root, "risk", network, write_tables(tables))
