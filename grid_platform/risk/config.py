"""Risk-model configuration: every threshold of risk-model.md, loaded from ``thresholds.yaml``.

The YAML next to this module is the default; ``$GRID_RISK_CONFIG`` points at a replacement
(same shape). ``load_config`` validates the values that the model relies on (ordering of the
wind thresholds and the trendline ratios, band bounds increasing, known levels in the
two-axis matrix) so a bad recalibration fails loudly instead of silently shifting levels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from grid_platform.weather.quality import QualityRules

DEFAULT_PATH = Path(__file__).with_name("thresholds.yaml")
CONFIG_ENV = "GRID_RISK_CONFIG"
LEVELS = ("ALERT", "WARNING", "NORMAL")
P90_SOURCES = ("config", "dwd_try2010")


@dataclass(frozen=True)
class WindConfig:
    window_hours: int
    alert_gust_excess_ms: float
    warning_gust_excess_ms: float
    gust_excess_decimals: int
    escalating_tree_tier: str
    excluded_conductors: tuple[str, ...]


@dataclass(frozen=True)
class HeatConfig:
    band_names: tuple[str, ...]
    band_max_m: tuple[float | None, ...]  # exclusive upper bounds, the last one None
    p90_c: dict[str, dict[int, float]]  # band -> month -> threshold
    p90_source: str  # the table the configuration asks for
    red_min_consecutive_days: int
    conductors: tuple[str, ...]
    p90_table_source: str = "config"  # the table ``p90_c`` currently holds


@dataclass(frozen=True)
class TwoAxisConfig:
    soil_p90_c: float
    soil_window_days: int
    soil_months: tuple[int, ...]
    soil_max_distance_m: float
    soil_asof_max_days: int
    level_matrix: dict[str, dict[str, str]]  # heat_status -> thermal tier ("high" / "other") -> level
    escalating_thermal_tier: str


@dataclass(frozen=True)
class TreeStrikeConfig:
    reach_factor: float
    tier_min_density_per_km: dict[str, float]
    multipliers: dict[str, float]
    excluded_conductors: tuple[str, ...]
    height_min_m: float
    height_max_m: float
    lateral_max_m: float
    forested_share: float
    forest_trees_per_km: float
    open_trees_per_km: float


@dataclass(frozen=True)
class RiskConfig:
    colors: dict[str, str]
    horizon_days: int
    forecast_max_distance_m: float
    nowcast_wind_max_distance_m: float
    nowcast_heat_max_distance_m: float
    nowcast_lookback_hours: int
    wind: WindConfig
    heat: HeatConfig
    two_axis: TwoAxisConfig
    warning_weight: float
    index_decimals: int
    alert_ratio_above: float
    warning_ratio_above: float
    ratio_decimals: int
    trendline_conductors: dict[str, tuple[str, ...]]  # vector -> conductor class
    trend_days: dict[str, tuple[int, int]]  # vector -> (first, last) offset from today
    distribution_wind_conductors: tuple[str, ...]
    tree_strike: TreeStrikeConfig
    weather_quality: QualityRules
    source: str  # the file this came from

    def color(self, level: str | None) -> str:
        return self.colors.get(level, self.colors["other"]) if level in LEVELS else self.colors["other"]

    def with_p90_table(self, table: dict[str, dict[int, float]], source: str) -> RiskConfig:
        """The same configuration using another P90 table (e.g. the TRY climatology)."""
        return replace(self, heat=replace(self.heat, p90_c=table, p90_table_source=source))


def _require(cond: bool, message: str, path: str) -> None:
    if not cond:
        raise ValueError(f"risk config {path}: {message}")


def parse_config(raw: dict[str, Any], path: str = "<dict>") -> RiskConfig:
    try:
        m, w, h, t, k = raw["matching"], raw["wind"], raw["heat"], raw["two_axis"], raw["trendline"]
        bands = h["altitude_bands"]
        wind = WindConfig(
            window_hours=int(w["window_hours"]),
            alert_gust_excess_ms=float(w["alert_gust_excess_ms"]),
            warning_gust_excess_ms=float(w["warning_gust_excess_ms"]),
            gust_excess_decimals=int(w["gust_excess_decimals"]),
            escalating_tree_tier=str(w["escalating_tree_tier"]),
            excluded_conductors=tuple(w["excluded_conductors"]),
        )
        heat = HeatConfig(
            band_names=tuple(str(b["name"]) for b in bands),
            band_max_m=tuple(None if b["max_m"] is None else float(b["max_m"]) for b in bands),
            p90_c={str(b): {int(mo): float(v) for mo, v in months.items()} for b, months in h["p90_c"].items()},
            p90_source=str(h["p90_source"]),
            red_min_consecutive_days=int(h["red_min_consecutive_days"]),
            conductors=tuple(h["conductors"]),
        )
        two_axis = TwoAxisConfig(
            soil_p90_c=float(t["soil_p90_c"]),
            soil_window_days=int(t["soil_window_days"]),
            soil_months=tuple(int(x) for x in t["soil_months"]),
            soil_max_distance_m=float(t["soil_max_distance_m"]),
            soil_asof_max_days=int(t["soil_asof_max_days"]),
            level_matrix={str(s): {str(a): str(b) for a, b in row.items()} for s, row in t["level_matrix"].items()},
            escalating_thermal_tier=str(t["escalating_thermal_tier"]),
        )
        ts, gen = raw["tree_strike"], raw["tree_strike"]["generated"]
        tree = TreeStrikeConfig(
            reach_factor=float(ts["reach_factor"]),
            tier_min_density_per_km={str(a): float(b) for a, b in ts["tier_min_density_per_km"].items()},
            multipliers={str(a): float(b) for a, b in ts["multipliers"].items()},
            excluded_conductors=tuple(ts["excluded_conductors"]),
            **{key: float(gen[key]) for key in ("height_min_m", "height_max_m", "lateral_max_m",
                                                "forested_share", "forest_trees_per_km", "open_trees_per_km")},
        )
        q = raw["weather_quality"]
        quality = QualityRules(**{key: type(getattr(QualityRules(), key))(value) for key, value in q.items()})
        cfg = RiskConfig(
            colors={str(a): str(b) for a, b in raw["colors"].items()},
            horizon_days=int(raw["horizon_days"]),
            forecast_max_distance_m=float(m["forecast_max_distance_m"]),
            nowcast_wind_max_distance_m=float(m["nowcast_wind_max_distance_m"]),
            nowcast_heat_max_distance_m=float(m["nowcast_heat_max_distance_m"]),
            nowcast_lookback_hours=int(m["nowcast_lookback_hours"]),
            wind=wind,
            heat=heat,
            two_axis=two_axis,
            warning_weight=float(raw["risk_km"]["warning_weight"]),
            index_decimals=int(raw["risk_km"]["index_decimals"]),
            alert_ratio_above=float(k["alert_ratio_above"]),
            warning_ratio_above=float(k["warning_ratio_above"]),
            ratio_decimals=int(k["ratio_decimals"]),
            trendline_conductors={"wind": tuple(k["wind_conductors"]), "heat": tuple(k["heat_conductors"])},
            trend_days={v: (int(raw["trend"][f"{v}_days"][0]), int(raw["trend"][f"{v}_days"][1]))
                        for v in ("wind", "heat")},
            distribution_wind_conductors=tuple(raw["alert_distribution"]["wind_conductors"]),
            tree_strike=tree,
            weather_quality=quality,
            source=path,
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"risk config {path}: missing or malformed entry {exc}") from exc
    _validate(cfg, path)
    return cfg


def _validate(cfg: RiskConfig, path: str) -> None:
    for level in (*LEVELS, "other", "map_other"):
        _require(level in cfg.colors, f"colors.{level} missing", path)
    _require(0 < cfg.wind.warning_gust_excess_ms < cfg.wind.alert_gust_excess_ms,
             "wind thresholds must satisfy 0 < warning < alert", path)
    bounds = cfg.heat.band_max_m
    _require(len(bounds) >= 1 and bounds[-1] is None and all(b is not None for b in bounds[:-1]),
             "altitude bands: only the last band may be open-ended", path)
    _require(list(bounds[:-1]) == sorted(bounds[:-1]), "altitude band bounds must increase", path)
    _require(set(cfg.heat.p90_c) <= set(cfg.heat.band_names), "p90_c names an unknown band", path)
    _require(all(1 <= mo <= 12 for t in cfg.heat.p90_c.values() for mo in t), "p90_c months must be 1..12", path)
    _require(cfg.heat.p90_source in P90_SOURCES, f"heat.p90_source must be one of {P90_SOURCES}", path)
    _require(cfg.heat.red_min_consecutive_days >= 1, "red_min_consecutive_days must be >= 1", path)
    _require(0 <= cfg.warning_ratio_above < cfg.alert_ratio_above <= 1,
             "trendline ratios must satisfy 0 <= warning < alert <= 1", path)
    _require(all(lo <= hi for lo, hi in cfg.trend_days.values()), "trend day ranges must be ordered", path)
    for status in ("GREEN", "ORANGE", "RED"):
        row = cfg.two_axis.level_matrix.get(status, {})
        _require(set(row) == {"high", "other"} and set(row.values()) <= set(LEVELS),
                 f"two_axis.level_matrix.{status} needs levels for 'high' and 'other'", path)
    _require(set(cfg.tree_strike.tier_min_density_per_km) == {"high", "mid", "low"} ==
             set(cfg.tree_strike.multipliers), "tree_strike tiers must be high, mid, low", path)
    _require(0 < cfg.tree_strike.height_min_m <= cfg.tree_strike.height_max_m, "tree heights", path)


def load_config(path: str | Path | None = None) -> RiskConfig:
    """The risk configuration from ``path``, else ``$GRID_RISK_CONFIG``, else the packaged file."""
    chosen = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_PATH)
    return _load_cached(str(chosen.resolve()))


@lru_cache(maxsize=8)
def _load_cached(path: str) -> RiskConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"risk config not found: {path}") from exc
    return parse_config(raw, path)
