"""Weather inputs: the real DWD test reference years, plausibility rules, gaps, aggregation."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from risk_builders import TZ, X0, Y0, hourly_frame

from grid_platform.risk.assess import assess_point_days
from grid_platform.risk.pointdays import point_days, point_windows
from grid_platform.weather.dwd_try import (
    derive_gusts,
    load_stations,
    load_try_year,
    parse_try,
    reference_weather,
)
from grid_platform.weather.quality import QualityRules, clean_hourly


@pytest.fixture(scope="module")
def kassel(try_dir, cfg):
    return load_try_year(try_dir / "TRY2010_07_Jahr.dat", 2026, cfg.weather_quality, TZ)


def test_all_stations_parse_with_header_positions(try_dir):
    stations = load_stations(try_dir)
    assert len(stations) == 15
    kassel = stations.set_index("region").loc[7]
    assert (kassel["name"], kassel["wmo"], kassel["lat"], kassel["lon"], kassel["elevation_m"]) == \
        ("Kassel", 10438, 51.3, 9.45, 231.0)  # 51°18'N 9°27'O 231 m
    fichtelberg = stations.set_index("region").loc[11]
    assert fichtelberg["elevation_m"] == 1213.0 and fichtelberg["lat"] == pytest.approx(50 + 26 / 60, abs=1e-4)


def test_mez_hours_become_utc(try_dir):
    _, raw = parse_try(try_dir / "TRY2010_07_Jahr.dat")
    assert len(raw) == 8760
    # HH = 1 on 1 Jan is 01:00 MEZ = 00:00 UTC; HH = 24 on 31 Dec wraps to 1 Jan 00:00 MEZ.
    # Cleaned on MEZ days ("Etc/GMT-1" = UTC+1 all year) the year has exactly its 8,760 hours.
    _, hourly, _ = load_try_year(try_dir / "TRY2010_07_Jahr.dat", 2026, QualityRules(), "Etc/GMT-1")
    first = raw[(raw["MM"] == 1) & (raw["DD"] == 1) & (raw["HH"] == 1)].iloc[0]
    row = hourly.set_index("ts_utc").loc[pd.Timestamp("2026-01-01 00:00", tz="UTC")]
    assert row["temp_c"] == first["t"] and row["wind_speed_ms"] == first["WG"]
    assert hourly["ts_utc"].min() == pd.Timestamp("2025-12-31 23:00", tz="UTC")
    assert hourly["ts_utc"].max() == pd.Timestamp("2026-12-31 22:00", tz="UTC") and len(hourly) == 8760


def test_kassel_spikes_are_flagged_with_reasons_and_excluded(kassel, cfg):
    _, hourly, flags = kassel
    spikes = flags[flags["rule"] == "isolated_spike"].set_index("ts_utc")
    # 63 m/s 2 Jan 22 h MEZ, 66 m/s 4 Jan 22 h, 47 m/s 19 Aug 21 h (MEZ = UTC + 1).
    expected = {pd.Timestamp("2026-01-02 21:00", tz="UTC"): 63.0, pd.Timestamp("2026-01-04 21:00", tz="UTC"): 66.0,
                pd.Timestamp("2026-08-19 20:00", tz="UTC"): 47.0}
    assert spikes["value"].to_dict() == expected
    assert "WR=99" in spikes.loc[pd.Timestamp("2026-01-04 21:00", tz="UTC"), "detail"]
    assert "p=881.6 hPa" in spikes.loc[pd.Timestamp("2026-08-19 20:00", tz="UTC"), "detail"]
    assert set(flags.loc[flags["rule"] == "out_of_range", "value"]) == {63.0, 66.0}
    rows = hourly.set_index("ts_utc").loc[list(expected)]
    # Excluded: the 1-hour holes are interpolated from the neighbours, never the spike itself.
    assert (rows["wind_speed_ms"] < 10).all() and rows["interpolated"].all()
    assert rows["quality_flags"].str.contains("wind_speed_ms:isolated_spike").all()
    assert hourly["wind_speed_ms"].max() < 25
    days = point_days(hourly, cfg, TZ).set_index("date")
    assert days.loc[pd.Timestamp("2026-01-04"), "wind_speed_max"] < 10


def test_other_stations_spikes_and_clean_files(try_dir, cfg):
    counts = {}
    for region in (3, 12, 15):
        _, _, flags = load_try_year(try_dir / f"TRY2010_{region:02d}_Jahr.dat", 2026, cfg.weather_quality, TZ)
        counts[region] = len(flags)
    assert counts == {3: 0, 12: 0, 15: 0}


def test_derived_gusts_are_flagged_deterministic_and_plausible(kassel, try_dir, cfg):
    station, hourly, _ = kassel
    assert hourly["gust_derived"].all()
    assert (hourly["wind_gust_ms"] >= hourly["wind_speed_ms"]).all()
    factor = (hourly["wind_gust_ms"] / hourly["wind_speed_ms"]).where(hourly["wind_speed_ms"] >= 5)
    assert 1.3 <= factor.min() and factor.max() <= 2.2
    again = derive_gusts(hourly["wind_speed_ms"].to_numpy(), hourly["ts_utc"], station.wmo)
    assert np.array_equal(again, hourly["wind_gust_ms"].to_numpy())
    # The same reference hour has the same gust in every calendar year it is mapped onto.
    _, other_year, _ = load_try_year(try_dir / "TRY2010_07_Jahr.dat", 2027, cfg.weather_quality, TZ)
    assert np.array_equal(other_year["wind_gust_ms"].to_numpy(), hourly["wind_gust_ms"].to_numpy())


def test_reference_year_on_a_leap_year_repeats_28_february(try_dir, cfg):
    _, hourly, _ = load_try_year(try_dir / "TRY2010_12_Jahr.dat", 2028, cfg.weather_quality, TZ)
    assert len(hourly) == 8784
    local = hourly.assign(local=hourly["ts_utc"].dt.tz_convert("Etc/GMT-1"))
    feb28 = local[local["local"].dt.strftime("%m-%d") == "02-28"]["temp_c"].to_numpy()
    feb29 = local[local["local"].dt.strftime("%m-%d") == "02-29"]["temp_c"].to_numpy()
    assert len(feb29) == 24 and np.array_equal(feb28, feb29)


def test_short_gaps_interpolated_long_gaps_leave_the_day_without_level(cfg):
    first = date(2026, 7, 1)
    hourly = hourly_frame("p", X0, Y0, first, 3, speed=lambda t: np.arange(len(t), dtype=float) % 24,
                          gust=20.0, temp=lambda t: 20.0 + (np.arange(len(t)) % 24) / 2)
    day1 = pd.Timestamp("2026-07-01 08:00", tz=TZ).tz_convert("UTC")
    day2 = pd.Timestamp("2026-07-02 08:00", tz=TZ).tz_convert("UTC")
    gap3 = (hourly["ts_utc"] >= day1) & (hourly["ts_utc"] < day1 + pd.Timedelta(hours=3))
    gap4 = (hourly["ts_utc"] >= day2) & (hourly["ts_utc"] < day2 + pd.Timedelta(hours=4))
    hourly.loc[gap3, ["wind_speed_ms", "temp_c"]] = np.nan  # 3 h: interpolated
    hourly = hourly[~gap4]  # 4 h absent rows: too long
    clean, flags = clean_hourly(hourly, cfg.weather_quality, TZ)
    assert flags.empty
    filled = clean.set_index("ts_utc").loc[day1:day1 + pd.Timedelta(hours=2)]
    assert filled["wind_speed_ms"].tolist() == [8.0, 9.0, 10.0] and filled["interpolated"].all()
    assert clean.set_index("ts_utc").loc[day2:day2 + pd.Timedelta(hours=3), "temp_c"].isna().all()
    days = assess_point_days(point_days(clean, cfg, TZ), cfg).set_index("date")
    assert days.loc[pd.Timestamp("2026-07-01"), ["wind_complete", "temp_complete"]].tolist() == [True, True]
    day2_row = days.loc[pd.Timestamp("2026-07-02")]
    assert not day2_row["wind_complete"] and not day2_row["temp_complete"]
    assert day2_row["hours_missing_wind"] == 4 and day2_row["hours_missing_temp"] == 4
    assert day2_row["wind_level"] is None and day2_row["heat_level"] is None
    assert days.loc[pd.Timestamp("2026-07-03"), "wind_level"] is not None


def test_gap_at_the_series_edge_is_not_extrapolated(cfg):
    hourly = hourly_frame("p", X0, Y0, date(2026, 7, 1), 1)
    clean, _ = clean_hourly(hourly.iloc[2:], cfg.weather_quality, TZ)
    assert clean["wind_speed_ms"].isna().sum() == 2
    assert not point_days(clean, cfg, TZ)["wind_complete"].iloc[0]


def test_synthetic_spike_and_temperature_rules(cfg):
    hourly = hourly_frame("p", X0, Y0, date(2026, 7, 1), 1, speed=3.0, temp=20.0)
    hourly.loc[5, "wind_speed_ms"] = 41.0
    hourly.loc[9, "temp_c"] = 45.0
    hourly.loc[12, "wind_gust_ms"] = -1.0
    _, flags = clean_hourly(hourly, cfg.weather_quality, TZ)
    assert set(zip(flags["variable"], flags["rule"])) == {
        ("wind_speed_ms", "isolated_spike"), ("temp_c", "isolated_spike"), ("wind_gust_ms", "out_of_range")}
    # A real storm builds up over hours: not a spike.
    storm = hourly_frame("p", X0, Y0, date(2026, 7, 1), 1, speed=lambda t: np.minimum(5 * np.arange(len(t)), 30))
    assert clean_hourly(storm, cfg.weather_quality, TZ)[1].empty


def test_windows_daily_worst_window_and_dst_hours(cfg):
    # Steady evening wind must not cancel a gusty morning: daily excess = worst window.
    def speed(t):
        return np.where(t.hour >= 16, 15.0, 3.0)

    def gust(t):
        return np.where(t.hour < 8, 12.0, np.where(t.hour >= 16, 16.0, 4.0))

    hourly = hourly_frame("p", X0, Y0, date(2026, 3, 28), 3, speed=speed, gust=gust)
    clean, _ = clean_hourly(hourly, cfg.weather_quality, TZ)
    windows = point_windows(clean, cfg, TZ)
    first = windows[windows["date"] == pd.Timestamp("2026-03-28")]
    assert first["gust_excess"].tolist() == [9.0, 1.0, 1.0]
    assert first["window_start"].tolist() == ["2026-03-28T00:00:00", "2026-03-28T08:00:00", "2026-03-28T16:00:00"]
    days = point_days(clean, cfg, TZ, windows).set_index("date")
    row = days.loc[pd.Timestamp("2026-03-28")]
    assert (row["gust_excess"], row["wind_speed_max"], row["wind_gusts_max"]) == (9.0, 15.0, 16.0)
    # 29 March 2026 is the spring DST day in Zurich: 23 hours, still complete.
    assert days.loc[pd.Timestamp("2026-03-29"), "hours_expected"] == 23
    assert days["wind_complete"].all()


def test_reference_year_backfill_for_network_points(try_dir, cfg):
    points = pd.DataFrame({"point_id": ["near_garmisch", "offenburg"], "lat": [47.5, 48.47], "lon": [11.0, 7.94]})
    hourly, flags = reference_weather(points, 2026, cfg.weather_quality, TZ, try_dir)
    per_point = hourly.groupby("point_id").agg(n=("ts_utc", "size"), source=("source", "first"),
                                               elevation=("elevation_m", "first"), lat=("lat", "first"))
    assert per_point.loc["near_garmisch", "source"] == "dwd_try2010:15"
    assert per_point.loc["offenburg", "lat"] == 48.47 and (per_point["n"] >= 8760).all()
    # The pairing of data-sources.md §7.1: Mannheim is the climate region of the Oberrhein grids.
    paired, _ = reference_weather(points.iloc[1:], 2026, cfg.weather_quality, TZ, try_dir, region=12)
    assert paired["source"].unique().tolist() == ["dwd_try2010:12"] and paired["elevation_m"].iloc[0] == 96.0
    days = point_days(paired, cfg, TZ)
    assert len(days) == 365 and days["wind_complete"].all() and days["temp_complete"].all()
    assert flags.empty
