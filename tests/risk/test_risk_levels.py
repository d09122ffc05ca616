"""Boundary tests of the wind, heat and trendline rules (risk-model.md §4, §5, §11, §13)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from grid_platform.risk.levels import (
    altitude_bands,
    classify_segment_days,
    day_risk_levels,
    escalate_tree_strike,
    heat_days,
    heat_streaks,
    wind_levels,
)


@pytest.mark.parametrize(("excess", "level"), [
    (0.0, "NORMAL"), (7.619, "NORMAL"), (7.62, "WARNING"), (7.621, "WARNING"), (12.459, "WARNING"),
    (12.46, "ALERT"), (12.461, "ALERT"), (30.0, "ALERT"),
])
def test_wind_thresholds(cfg, excess, level):
    assert wind_levels(np.array([excess]), cfg.wind)[0] == level


def test_wind_excess_from_subtraction_reads_as_the_data_says(cfg):
    # 15.62 - 8.0 is 7.6199999... in binary floating point; the data says 7.62 -> WARNING.
    assert 15.62 - 8.0 < 7.62
    assert wind_levels(np.array([15.62 - 8.0, 20.46 - 8.0]), cfg.wind).tolist() == ["WARNING", "ALERT"]


def test_wind_unknown_excess_is_not_assessed(cfg):
    assert wind_levels(np.array([np.nan]), cfg.wind)[0] is None


@pytest.mark.parametrize(("level", "tier", "expected", "flag"), [
    ("WARNING", "high", "ALERT", True),
    ("WARNING", "mid", "WARNING", False),
    ("WARNING", None, "WARNING", False),
    ("NORMAL", "high", "NORMAL", False),
    ("ALERT", "high", "ALERT", False),
    (None, "high", None, False),
])
def test_tree_strike_escalation(cfg, level, tier, expected, flag):
    levels, escalated = escalate_tree_strike(np.array([level], dtype=object), np.array([tier], dtype=object),
                                             cfg.wind)
    assert levels[0] == expected
    assert escalated.dtype == bool and bool(escalated[0]) is flag


@pytest.mark.parametrize(("elevation", "band"), [
    (0.0, "low"), (499.9, "low"), (500.0, "mid"), (999.9, "mid"), (1000.0, "high"), (3000.0, "high"),
    (np.nan, None),
])
def test_altitude_bands(cfg, elevation, band):
    assert altitude_bands(np.array([elevation]), cfg.heat)[0] == band


def _heat(cfg, dates, temps, elevation=450.0, points=None):
    dates = pd.to_datetime(pd.Series(dates)).to_numpy("datetime64[D]")
    points = np.zeros(len(dates), dtype=np.int64) if points is None else np.asarray(points)
    return heat_days(points, dates, np.asarray(temps, dtype=float), np.full(len(dates), elevation), cfg.heat)


def test_tmax_equal_to_p90_is_not_stressed(cfg):
    out = _heat(cfg, ["2026-07-01", "2026-07-02"], [27.0, 27.01])  # low band July P90 = 27
    assert out["p90_threshold"].tolist() == [27.0, 27.0]
    assert out["consecutive_heat_days"].tolist() == [0, 1]
    assert out["heat_level"].tolist() == ["NORMAL", "WARNING"]


@pytest.mark.parametrize(("elevation", "p90"), [(499.9, 27.0), (500.0, 23.0), (999.9, 23.0), (1000.0, 19.0)])
def test_p90_by_band_at_band_bounds(cfg, elevation, p90):
    assert _heat(cfg, ["2026-07-15"], [40.0], elevation)["p90_threshold"][0] == p90


def test_third_consecutive_day_is_alert(cfg):
    out = _heat(cfg, pd.date_range("2026-07-01", periods=5), [30, 30, 30, 30, 20])
    assert out["consecutive_heat_days"].tolist() == [1, 2, 3, 4, 0]
    assert out["air_tier"].tolist() == ["ORANGE", "ORANGE", "RED", "RED", "GREEN"]
    assert out["heat_level"].tolist() == ["WARNING", "WARNING", "ALERT", "ALERT", "NORMAL"]


def test_october_and_april_have_no_heat_stress(cfg):
    out = _heat(cfg, ["2026-04-30", "2026-10-01", "2026-10-02", "2026-10-03"], [35, 35, 35, 35])
    assert np.isnan(out["p90_threshold"]).all()
    assert out["heat_level"].tolist() == ["NORMAL"] * 4
    assert out["consecutive_heat_days"].tolist() == [0, 0, 0, 0]


def test_streak_runs_over_month_ends(cfg):
    # 30 Jun (P90 26), 1 Jul and 2 Jul (P90 27): the run continues into the new month.
    out = _heat(cfg, ["2026-06-30", "2026-07-01", "2026-07-02", "2026-08-31", "2026-09-01", "2026-09-02"],
                [30, 30, 30, 30, 30, 30])
    assert out["consecutive_heat_days"].tolist() == [1, 2, 3, 1, 2, 3]
    assert out["heat_level"].tolist()[2] == "ALERT" and out["heat_level"].tolist()[5] == "ALERT"


def test_streak_ends_with_the_heat_season(cfg):
    out = _heat(cfg, ["2026-09-29", "2026-09-30", "2026-10-01"], [30, 30, 30])
    assert out["consecutive_heat_days"].tolist() == [1, 2, 0]


def test_streak_runs_over_the_year_end(cfg):
    # The default season is May-Sep; a recalibrated table with December and January thresholds
    # (e.g. for a southern-hemisphere network) must continue the run over 31 Dec -> 1 Jan.
    table = {band: {12: 20.0, 1: 20.0} for band in cfg.heat.band_names}
    winter = replace(cfg, heat=replace(cfg.heat, p90_c=table))
    out = _heat(winter, ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"], [25, 25, 25, 25])
    assert out["consecutive_heat_days"].tolist() == [1, 2, 3, 4]
    assert out["heat_level"].tolist() == ["WARNING", "WARNING", "ALERT", "ALERT"]


def test_missing_day_breaks_the_streak(cfg):
    # An absent day (3 Jul) and a day without Tmax (6 Jul) both end the run.
    out = _heat(cfg, ["2026-07-01", "2026-07-02", "2026-07-04", "2026-07-05", "2026-07-06", "2026-07-07"],
                [30, 30, 30, 30, np.nan, 30])
    assert out["consecutive_heat_days"].tolist() == [1, 2, 1, 2, 0, 1]
    assert out["heat_level"].tolist() == ["WARNING", "WARNING", "WARNING", "WARNING", None, "WARNING"]


def test_streaks_are_per_point_and_independent_of_row_order(cfg):
    dates = list(pd.date_range("2026-07-01", periods=3)) * 2
    points = [0, 0, 0, 1, 1, 1]
    temps = [30, 30, 30, 20, 30, 30]
    ordered = _heat(cfg, dates, temps, points=points)
    perm = np.array([5, 2, 0, 4, 1, 3])
    shuffled = _heat(cfg, [dates[i] for i in perm], [temps[i] for i in perm], points=[points[i] for i in perm])
    assert ordered["consecutive_heat_days"].tolist() == [1, 2, 3, 0, 1, 2]
    assert shuffled["consecutive_heat_days"].tolist() == ordered["consecutive_heat_days"][perm].tolist()


def test_heat_streaks_rejects_unsorted_input():
    with pytest.raises(ValueError):
        heat_streaks(np.array([0, 0]), np.array([5, 4]), np.array([True, True]))


def test_unknown_elevation_is_not_assessed(cfg):
    out = _heat(cfg, ["2026-07-01"], [35.0], elevation=np.nan)
    assert out["heat_level"][0] is None and out["altitude_band"][0] is None


@pytest.mark.parametrize(("ratio", "level"), [
    (0.0, "NORMAL"), (0.35, "NORMAL"), (0.3501, "WARNING"), (0.65, "WARNING"), (0.6501, "ALERT"), (1.0, "ALERT"),
    (0.35004, "NORMAL"),  # rounds to 0.35 (4 decimals) before the strict comparison
])
def test_trendline_day_levels(cfg, ratio, level):
    assert day_risk_levels(np.array([ratio]), cfg)[0] == level


def test_classify_segment_days_combines_both_rules(cfg):
    days = pd.DataFrame({
        "point_id": ["a", "a", "a", "b"],
        "date": pd.to_datetime(["2026-07-03", "2026-07-01", "2026-07-02", "2026-07-01"]),
        "gust_excess": [7.62, 12.46, 7.619, 8.0],
        "temp_max_c": [30.0, 30.0, 30.0, 27.0],
        "elevation_m": [450.0, 450.0, 450.0, 450.0],
        "strike_tree_tier": ["high", None, "high", "mid"],
    })
    out = classify_segment_days(days, cfg)
    assert out["wind_level"].tolist() == ["ALERT", "ALERT", "NORMAL", "WARNING"]
    assert out["escalated_by_tree_strike"].tolist() == [True, False, False, False]
    assert out["consecutive_heat_days"].tolist() == [3, 1, 2, 0]
    assert out["heat_level"].tolist() == ["ALERT", "WARNING", "WARNING", "NORMAL"]
