"""Builders of fragments and hourly weather at known EPSG:32632 positions (risk tests)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd
import shapely

from grid_platform.risk.matching import to_wgs84
from grid_platform.topology.build import segment_id
from grid_platform.weather.quality import HOURLY_COLUMNS

TZ = "Europe/Zurich"
# Lucerne area, EPSG:32632 metres.
X0, Y0 = 447_000.0, 5_211_000.0


def lonlat(x: float, y: float) -> tuple[float, float]:
    p = to_wgs84(np.array([shapely.Point(x, y)], dtype=object))[0]
    return float(p.x), float(p.y)


def fragments_frame(rows: Sequence[dict], dso: str = "ckw") -> pd.DataFrame:
    """Fragments per the publication contract. Each row: ``fragment_id, coords`` (EPSG:32632
    vertices) and optionally line_name, conductor_type, municipality, operational_unit,
    parent_substation_name, feeder_id, strike_tree_tier, thermal_tier."""
    records = []
    for r in rows:
        coords = r["coords"]
        geom = shapely.Point(coords[0]) if len(coords) == 1 else shapely.LineString(coords)
        line = r.get("line_name", "L1")
        conductor = r.get("conductor_type", "overhead_bare")
        municipality = r.get("municipality", "Luzern")
        records.append({
            "fragment_id": r["fragment_id"], "segment_id": segment_id(dso, line, conductor, municipality),
            "dso_id": dso, "network_id": dso, "line_name": line, "conductor_type": conductor,
            "municipality": municipality, "operational_unit": r.get("operational_unit", "Nord"),
            "parent_substation_name": r.get("parent_substation_name", "UW A"), "feeder_id": r.get("feeder_id", "F1"),
            "length_m": shapely.length(geom), "geom": shapely.to_wkb(geom),
            "strike_tree_tier": r.get("strike_tree_tier"), "thermal_tier": r.get("thermal_tier"),
        })
    return pd.DataFrame(records)


def hourly_frame(point_id: str, x: float, y: float, first_day: date, days: int, *, speed=5.0, gust=8.0,
                 temp=15.0, elevation_m: float = 450.0, tz: str = TZ) -> pd.DataFrame:
    """Hourly rows covering whole local days. ``speed``/``gust``/``temp`` are scalars,
    arrays over the hours, or callables of the local timestamp series."""
    start = pd.Timestamp(first_day).tz_localize(tz)
    end = (pd.Timestamp(first_day) + pd.Timedelta(days=days)).tz_localize(tz)
    ts = pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="h", inclusive="left")
    local = ts.tz_convert(tz)

    def values(v):
        return np.asarray(v(local) if callable(v) else np.broadcast_to(v, len(ts)), dtype=float)

    lon, lat = lonlat(x, y)
    frame = pd.DataFrame({
        "point_id": point_id, "lat": lat, "lon": lon, "elevation_m": elevation_m, "ts_utc": ts,
        "wind_speed_ms": values(speed), "wind_gust_ms": values(gust), "temp_c": values(temp),
        "source": "test", "gust_derived": False, "interpolated": False, "quality_flags": None,
    })
    return frame[HOURLY_COLUMNS]
