"""Vectorised level rules of risk-model.md §4-§5 and §11 (numpy arrays in, arrays out).

Rules work on small integer codes (level code = rank: 0 not assessed, 1 NORMAL, 2 WARNING,
3 ALERT; air tier 0 unknown, 1 GREEN, 2 ORANGE, 3 RED) and only the results are turned into
names, by indexing a 4-element object array — cheap at millions of rows. Public helpers
return names: "ALERT", "WARNING", "NORMAL" or None (not assessed).
``classify_segment_days`` applies the wind and heat rules to a table of segment-days at once
and is what the benchmark measures against a row-by-row reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grid_platform.risk.config import HeatConfig, RiskConfig, WindConfig

ALERT, WARNING, NORMAL = "ALERT", "WARNING", "NORMAL"
LEVEL_RANK = {ALERT: 3, WARNING: 2, NORMAL: 1}
LEVEL_NAMES = np.array([None, NORMAL, WARNING, ALERT], dtype=object)
RED, ORANGE, GREEN = "RED", "ORANGE", "GREEN"
TIER_NAMES = np.array([None, GREEN, ORANGE, RED], dtype=object)  # air tier code -> level code is identity


def round_excess(gust_excess: np.ndarray, wind: WindConfig) -> np.ndarray:
    return np.round(np.asarray(gust_excess, dtype=float), wind.gust_excess_decimals)


def wind_codes(gust_excess: np.ndarray, wind: WindConfig) -> np.ndarray:
    """3 if excess >= alert, 2 if >= warning, 1 below, 0 where the excess is unknown."""
    x = round_excess(gust_excess, wind)
    with np.errstate(invalid="ignore"):
        codes = np.where(x >= wind.alert_gust_excess_ms, 3, np.where(x >= wind.warning_gust_excess_ms, 2, 1))
    return np.where(np.isnan(x), 0, codes).astype(np.int8)


def wind_levels(gust_excess: np.ndarray, wind: WindConfig) -> np.ndarray:
    return LEVEL_NAMES[wind_codes(gust_excess, wind)]


def escalate_tree_strike(levels: np.ndarray, tree_tier: np.ndarray, wind: WindConfig
                         ) -> tuple[np.ndarray, np.ndarray]:
    """WARNING on a fragment of the escalating tier becomes ALERT; the flag is never null.
    ``levels`` may be names or codes; the result has the same kind."""
    levels = np.asarray(levels)
    warning = 2 if levels.dtype.kind in "iu" else WARNING
    escalated = (levels == warning) & (np.asarray(tree_tier, dtype=object) == wind.escalating_tree_tier)
    out = levels.copy()
    out[escalated] = 3 if levels.dtype.kind in "iu" else ALERT
    return out, escalated.astype(bool)


def band_codes(elevation_m: np.ndarray, heat: HeatConfig) -> np.ndarray:
    """Band index per elevation (lower bound inclusive); ``len(bands)`` where unknown."""
    e = np.asarray(elevation_m, dtype=float)
    bounds = np.array([b for b in heat.band_max_m if b is not None], dtype=float)
    return np.where(np.isnan(e), len(heat.band_names), np.searchsorted(bounds, e, side="right"))


def altitude_bands(elevation_m: np.ndarray, heat: HeatConfig) -> np.ndarray:
    """Band name per elevation; None where the elevation is unknown."""
    return np.append(np.asarray(heat.band_names, dtype=object), None)[band_codes(elevation_m, heat)]


def p90_table(heat: HeatConfig) -> np.ndarray:
    """(band index incl. the unknown row, month 0..12) -> threshold, NaN where none."""
    table = np.full((len(heat.band_names) + 1, 13), np.nan)
    for i, name in enumerate(heat.band_names):
        for month, value in heat.p90_c.get(name, {}).items():
            table[i, month] = value
    return table


def heat_streaks(point_codes: np.ndarray, day_numbers: np.ndarray, stressed: np.ndarray) -> np.ndarray:
    """Position of each day in its run of consecutive stressed days (1, 2, ...), 0 if not stressed.

    Input sorted by (point, day) with unique days per point. A run continues only on the
    next calendar day of the same point, so an absent day or a non-stressed (or unknown)
    day ends it — across month and year ends alike, as days are absolute numbers.
    """
    p = np.asarray(point_codes)
    d = np.asarray(day_numbers, dtype=np.int64)
    s = np.asarray(stressed, dtype=bool)
    n = len(s)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    same = np.r_[False, p[1:] == p[:-1]]
    step = np.r_[0, d[1:] - d[:-1]]
    if np.any(same & (step <= 0)):
        raise ValueError("heat_streaks needs rows sorted by point and day, one row per point and day")
    continues = s & np.r_[False, s[:-1]] & same & (step == 1)
    idx = np.arange(n)
    run_start = np.maximum.accumulate(np.where(s & ~continues, idx, 0))
    return np.where(s, idx - run_start + 1, 0).astype(np.int64)


def heat_days(point_codes: np.ndarray, dates: np.ndarray, temp_max_c: np.ndarray, elevation_m: np.ndarray,
              heat: HeatConfig) -> dict[str, np.ndarray]:
    """Heat rules per weather point-day, one row per (point, date), any row order (§5).

    Stressed = a threshold exists for (band, month) and ``temp_max_c > p90`` (strict);
    ``consecutive_heat_days`` = position in the run of stressed days of the point; air tier
    RED from ``red_min_consecutive_days``, ORANGE before, GREEN unstressed; level RED ->
    ALERT, ORANGE -> WARNING, GREEN -> NORMAL. A day without Tmax or elevation (unknown band)
    is not assessed (None) and breaks the streak. Returns ``altitude_band, p90_threshold,
    consecutive_heat_days, air_tier, heat_level`` in the input order.
    """
    days = np.asarray(dates, dtype="datetime64[D]")
    band = band_codes(elevation_m, heat)
    months = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    p90 = p90_table(heat)[band, months]
    t = np.asarray(temp_max_c, dtype=float)
    known = ~np.isnan(t) & (band < len(heat.band_names))
    with np.errstate(invalid="ignore"):
        stressed = known & (t > p90)  # NaN threshold (no heat season) compares False
    day_numbers = days.astype(np.int64)
    points = np.asarray(point_codes, dtype=np.int64)
    consecutive = np.empty(len(t), dtype=np.int64)
    if len(t):
        # One int64 key (point, day) sorted by quicksort: rows are unique per key, so an
        # unstable sort is exact and much faster than a two-key lexsort.
        first_day = day_numbers.min()
        key = points * (day_numbers.max() - first_day + 1) + (day_numbers - first_day)
        order = np.argsort(key)
        consecutive[order] = heat_streaks(points[order], day_numbers[order], stressed[order])
    tier = np.where(consecutive >= heat.red_min_consecutive_days, 3, np.where(consecutive >= 1, 2, 1))
    tier = np.where(known, tier, 0)
    band_names = np.append(np.asarray(heat.band_names, dtype=object), None)
    return {"altitude_band": band_names[band], "p90_threshold": p90, "consecutive_heat_days": consecutive,
            "air_tier": TIER_NAMES[tier], "heat_level": LEVEL_NAMES[tier]}


def day_risk_levels(ratio: np.ndarray, cfg: RiskConfig) -> np.ndarray:
    """Trendline §11 on the rounded ratio, strict: ALERT > 0.65, WARNING > 0.35, else NORMAL."""
    r = np.round(np.asarray(ratio, dtype=float), cfg.ratio_decimals)
    with np.errstate(invalid="ignore"):
        return LEVEL_NAMES[np.where(r > cfg.alert_ratio_above, 3, np.where(r > cfg.warning_ratio_above, 2, 1))]


def colors(levels: np.ndarray, cfg: RiskConfig) -> np.ndarray:
    c = cfg.colors
    palette = np.array([c["other"], c[NORMAL], c[WARNING], c[ALERT]], dtype=object)
    codes = pd.Series(np.asarray(levels, dtype=object)).map(LEVEL_RANK).fillna(0).to_numpy(np.int64)
    return palette[codes]


def classify_segment_days(days: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """Wind and heat levels for segment-days in one vectorised pass.

    Input columns: ``point_id, date, gust_excess, temp_max_c, elevation_m, strike_tree_tier``
    with one row per (point_id, date) — the heat streak runs per weather point. Output adds
    ``wind_level, escalated_by_tree_strike, altitude_band, p90_threshold,
    consecutive_heat_days, air_tier, heat_level``, rows in the input order.
    """
    codes, escalated = escalate_tree_strike(wind_codes(days["gust_excess"].to_numpy(float), cfg.wind),
                                            days["strike_tree_tier"].to_numpy(object), cfg.wind)
    point = days["point_id"]
    # A categorical point id (how repeated keys are best stored) already carries integer codes.
    points = point.cat.codes.to_numpy() if isinstance(point.dtype, pd.CategoricalDtype) else pd.factorize(point)[0]
    heat = heat_days(points, days["date"].to_numpy("datetime64[D]"), days["temp_max_c"].to_numpy(float),
                     days["elevation_m"].to_numpy(float), cfg.heat)
    out = days.copy(deep=False)  # new columns only; the input's columns are shared, not copied
    for column, values in {"wind_level": LEVEL_NAMES[codes], "escalated_by_tree_strike": escalated, **heat}.items():
        out[column] = values
    return out
