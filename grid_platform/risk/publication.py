"""Publish one risk run as the ``risk`` dataset of docs/publications.md.

Files: ``risks.parquet``, ``risks_8h.parquet``, ``risks_now.parquet``,
``fragment_risk_daily.parquet``, ``risk_km.parquet``, ``trendline.parquet``, ``trend.parquet``,
``tree_strike_spans.parquet`` and ``maps/<date>.geojson`` (one per horizon date). Beyond the
contract, ``weather_point_days.parquet`` (the assessed point-day history, which the next run
needs to continue heat streaks) and ``weather_flags.parquet`` (rejected weather values with
their evidence) ride along; the manifest ``extra`` carries the P90 source, the data-quality
counters and the summary inputs. Dates are Parquet ``date``, timestamps UTC.
``grid_platform.publish.publish`` makes the switch atomic: a failed write leaves the previous
version served.

The three ``GridRisk`` tables are written sorted by the read API's ordering (date, vector,
level, segment; ``risks_8h`` by slot after the date) in small row groups, so a read for one
date and one vector prunes by row-group statistics to one or two groups instead of scanning
the whole table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from grid_platform.publish import Publication, publish
from grid_platform.risk.config import RiskConfig, load_config
from grid_platform.risk.levels import ALERT, WARNING
from grid_platform.risk.pipeline import RiskRun
from grid_platform.risk.vegetation import SPAN_COLUMNS

DATASET = "risk"
MAP_PROPERTIES = ["fragment_id", "segment_id", "risk_vector", "line_name", "conductor_type",
                  "parent_substation_name", "operational_unit", "feeder_id", "municipality", "date", "risk_level",
                  "risk_color_hex", "gust_excess", "wind_speed_max", "wind_gusts_max", "temp_max_c",
                  "p90_threshold", "consecutive_heat_days", "altitude_band", "forecast_model", "is_vegetated_zone",
                  "escalated_by_tree_strike"]


DATE_COLUMNS = ("date", "soil_asof_date")


def _date_array(values: pd.Series) -> pa.Array:
    """A column of calendar dates as Arrow date32, nulls kept (vectorised: a month of a large
    network is a million values)."""
    stamps = pd.to_datetime(values)
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_localize(None)  # the wall-clock date, as written
    return pa.array(stamps.to_numpy("datetime64[D]"), type=pa.date32(), from_pandas=True)


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    dated = [c for c in DATE_COLUMNS if c in frame.columns]
    # Placeholders keep the column order and the row count; the dates go in as date32 arrays.
    placeholders = frame.assign(**{c: np.zeros(len(frame), dtype=np.int8) for c in dated})
    table = pa.Table.from_pandas(placeholders, preserve_index=False)
    for column in dated:
        i = table.column_names.index(column)
        table = table.set_column(i, pa.field(column, pa.date32()), _date_array(frame[column]))
    return table


_BOOL = {"escalated_by_tree_strike", "escalated_by_thermal", "is_vegetated_zone", "generated", "wind_complete",
         "temp_complete", "gust_derived", "interpolated", "thermal_modelled"}
_INT = {"slot", "alert_count", "warning_count", "total_segments", "n_fragments", "n_units", "n_tratte", "n_lines",
        "consecutive_heat_days", "n_strike", "hours_expected", "hours_missing_wind", "hours_missing_temp"}
_FLOAT = {"lat", "lon", "elevation_m", "value", "length_m", "start_m", "end_m", "multiplier", "strike_density_km",
          "strike_density_per_km", "strike_tree_multiplier", "metric_max", "risk_index", "risk_ratio", "gust_excess",
          "wind_speed_max", "wind_gusts_max", "temp_max_c", "p90_threshold", "point_distance_m", "thermal_margin_c",
          "thermal_theta_max_c", "elevation_start_m", "elevation_end_m", "soil7_mean_c", "soil7_p90_c",
          "wind_speed_ms", "wind_gust_ms", "temp_c"}


def _arrow_type(name: str) -> pa.DataType:
    """Column type for a column that holds no value (an empty table must keep its types)."""
    if name in DATE_COLUMNS:
        return pa.date32()
    if name in ("observed_at", "ts_utc"):
        return pa.timestamp("us", tz="UTC")
    if name == "tile_ids":
        return pa.list_(pa.string())
    if name == "geom":
        return pa.binary()
    if name in _BOOL:
        return pa.bool_()
    if name in _INT:
        return pa.int64()
    if name in _FLOAT or name.startswith("km_"):
        return pa.float64()
    return pa.string()


# Ordering of the read API (grid-api §3.4) per GridRisk table, and the row-group size: a
# (date, vector) slice is a few thousand rows, so it spans one or two groups of this size.
RISK_SORT_KEYS = {
    "risks": ["date", "risk_vector", "risk_level", "segment_id"],
    "risks_8h": ["date", "slot", "risk_vector", "risk_level", "segment_id"],
    "risks_now": ["date", "risk_vector", "risk_level", "segment_id"],
}
RISK_ROW_GROUP_SIZE = 16_384


def _write(frame: pd.DataFrame, path: Path, *, sort_by: list[str] | None = None,
           row_group_size: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _arrow_table(frame)
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, pa.field(field.name, _arrow_type(field.name)),
                                     pa.nulls(len(table), _arrow_type(field.name)))
    if sort_by and len(table):
        table = table.sort_by([(c, "ascending") for c in sort_by if c in table.column_names])
    pq.write_table(table, path, row_group_size=row_group_size)


def write_risk_table(frame: pd.DataFrame, path: Path) -> None:
    """Write a GridRisk table (``risks``, ``risks_8h``, ``risks_now``) sorted, in small row groups."""
    _write(frame, path, sort_by=RISK_SORT_KEYS[path.name.removesuffix(".parquet")],
           row_group_size=RISK_ROW_GROUP_SIZE)


def _json_value(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return value


def risk_map(daily: pd.DataFrame, day: pd.Timestamp, cfg: RiskConfig) -> bytes:
    """FeatureCollection (EPSG:4326) of every fragment row of ``day``, both vectors; the map
    paint ``map_color_hex`` is the level colour for ALERT/WARNING and grey otherwise."""
    rows = daily[pd.to_datetime(daily["date"]) == day].sort_values(["risk_vector", "line_name", "fragment_id"])
    rows = rows[rows["feature_geojson"].notna()]
    props = rows[MAP_PROPERTIES].assign(date=day.date().isoformat())
    levels = rows["risk_level"].to_numpy(object)
    props["map_color_hex"] = np.where(np.isin(levels, [ALERT, WARNING]), rows["risk_color_hex"].to_numpy(object),
                                      cfg.colors["map_other"])
    records = props.to_dict("records")
    features = []
    for text, record in zip(rows["feature_geojson"], records):
        geometry = orjson.loads(text)
        geometry = geometry.get("geometry", geometry) if geometry.get("type") == "Feature" else geometry
        features.append(orjson.dumps({"type": "Feature", "geometry": orjson.Fragment(orjson.dumps(geometry)),
                                      "properties": {k: _json_value(v) for k, v in record.items()}}))
    return b'{"type":"FeatureCollection","features":[' + b",".join(features) + b"]}"


def write_risk_files(run: RiskRun, directory: Path, cfg: RiskConfig | None = None) -> None:
    cfg = cfg or load_config()
    write_risk_table(run.risks, directory / "risks.parquet")
    write_risk_table(run.risks_8h, directory / "risks_8h.parquet")
    write_risk_table(run.risks_now, directory / "risks_now.parquet")
    _write(run.fragment_risk_daily, directory / "fragment_risk_daily.parquet")
    _write(run.risk_km, directory / "risk_km.parquet")
    _write(run.trendline, directory / "trendline.parquet")
    _write(run.trend, directory / "trend.parquet")
    spans = run.tree_strike_spans
    if spans is None:
        spans = pd.DataFrame({c: pd.Series(dtype=object) for c in SPAN_COLUMNS})
    _write(spans, directory / "tree_strike_spans.parquet")
    _write(run.point_days, directory / "weather_point_days.parquet")
    _write(run.weather_flags, directory / "weather_flags.parquet")
    (directory / "maps").mkdir(exist_ok=True)
    for day in run.horizon:
        (directory / "maps" / f"{day.isoformat()}.geojson").write_bytes(
            risk_map(run.fragment_risk_daily, pd.Timestamp(day), cfg))


def publish_risk(root: Path, run: RiskRun, cfg: RiskConfig | None = None) -> Publication:
    """Publish ``run`` as a new version of ``risk/<network_id>`` (atomic ``current`` switch)."""
    extra = {"today": run.today.isoformat(), "generated_at": run.generated_at.isoformat(),
             "p90_source": run.p90_source, "quality": run.quality, "summary": run.summary}
    return publish(Path(root), DATASET, run.network_id, lambda d: write_risk_files(run, d, cfg),
                   extra=orjson.loads(orjson.dumps(extra)))


def load_previous(publication: Publication | None) -> dict[str, pd.DataFrame]:
    """The history tables of a published run (for ``run_risk(previous=...)`` via ``RiskRun``)."""
    if publication is None:
        return {}
    names = {"point_days": "weather_point_days", "fragment_risk_daily": "fragment_risk_daily", "risks": "risks",
             "risks_8h": "risks_8h", "risk_km": "risk_km", "trendline": "trendline"}
    out = {}
    for attr, stem in names.items():
        frame = pd.read_parquet(publication.file(f"{stem}.parquet"))
        if "date" in frame.columns:
            frame["date"] = pd.to_datetime(frame["date"])
        out[attr] = frame
    return out
