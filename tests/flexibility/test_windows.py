"""Windows (flexibility.md §1) and suggestions (§2) on the demo community's SimBench data,
CKW prices from the CKW stand-in's payload through the platform's normaliser, and hand-made
series where a rule's edge needs exact numbers.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from flex_fixtures import COMMUNITY, TZ

from grid_platform.ckw.normalise import normalise_prices
from grid_platform.flexibility import windows as fw
from grid_platform.flexibility.participants import (
    ParticipantRegistry,
    community_exchange,
    consumption_matrix,
    device_consumption,
    generate_community,
    local_day_bounds,
    quarter_hours,
)
from grid_platform.flexibility.periods import PERIODS, period_key
from grid_platform.flexibility.suggestions import build_suggestions
from grid_platform.standins.ckw import prices_payload

ZRH = ZoneInfo(TZ)
JUNE = date(2026, 6, 15)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZRH).astimezone(UTC)


def hourly_exchange(day: date, net_by_local_hour: dict[int, float]) -> pd.DataFrame:
    start, end = local_day_bounds(day, TZ)
    ts = pd.date_range(start, end, freq="h", inclusive="left")
    hours = ts.tz_convert(TZ).hour
    return pd.DataFrame({"ts": ts, "consumption_kwh": 10.0,
                         "net_exchange_kwh": [net_by_local_hour.get(h, -1.0) for h in hours]})


@pytest.fixture(scope="module")
def june(registry) -> dict:
    members = registry.all_members(COMMUNITY)
    start, end = local_day_bounds(JUNE, TZ)
    history_start, _ = local_day_bounds(JUNE - timedelta(days=28), TZ)
    return {"exchange": community_exchange(members, start, end, TZ),
            "history": device_consumption(members, history_start, start, TZ, "1h")}


def ckw_prices(now_local: datetime, first: date, last: date) -> pd.Series:
    """Integrated hourly prices as the platform ingests them (stand-in payload -> normaliser)."""
    start = datetime.combine(first, datetime.min.time(), tzinfo=ZRH).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=ZRH).astimezone(UTC)
    payload = prices_payload(now_local, tariff_type="integrated", start_timestamp=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             end_timestamp=end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    rows, rejects = normalise_prices(payload, endpoint="prices", tariff_name="home_dynamic",
                                     tariff_types=("integrated",), ingested_at=datetime.now(UTC))
    assert rejects == []
    return fw.hourly_prices(pd.DataFrame(rows))


# --- registry and profiles ---------------------------------------------------------------------


def test_registry_is_deterministic_and_uses_simbench_profiles(registry):
    again = ParticipantRegistry.demo({COMMUNITY: 300}, 2026)
    assert again.participants == registry.participants
    assert generate_community(COMMUNITY, 300, 2027) != registry.participants
    members = registry.all_members(COMMUNITY)
    assert len(members) == 300 and len({p.participant_id for p in members}) == 300
    assert {p.profile[:2] for p in members} <= {"H0", "G0", "G1", "G2", "G3", "G4", "G5", "G6", "L0", "L1", "L2"}
    assert any(p.device_id is None for p in members) and any(p.user_id is None for p in members)
    member = members[0]
    year = quarter_hours(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    annual = consumption_matrix([member], year, TZ).sum()
    assert annual == pytest.approx(member.annual_kwh, rel=0.02)  # scaled by the annual kWh
    assert registry.membership(member.recipient).community_id == COMMUNITY


def test_local_days_have_92_96_100_quarter_hours(registry):
    members = registry.all_members(COMMUNITY)[:5]
    for day, quarters in ((date(2026, 3, 29), 92), (date(2026, 6, 1), 96), (date(2026, 10, 25), 100)):
        frame = device_consumption(members, *local_day_bounds(day, TZ), TZ)
        assert frame.groupby("device_id").size().unique().tolist() == [quarters]
        hourly = device_consumption(members, *local_day_bounds(day, TZ), TZ, "1h")
        assert hourly.groupby("device_id").size().unique().tolist() == [quarters // 4]
        quarter_sum = frame.groupby("device_id")["consumption_kwh"].sum()
        assert np.allclose(hourly.groupby("device_id")["consumption_kwh"].sum(), quarter_sum, atol=1e-6)


# --- window ids and the surplus rule -----------------------------------------------------------


def test_window_id_rule():
    start, end = local(JUNE, 10), local(JUNE, 13)
    text = f"surplus|rec-demo|{start.isoformat()}|{end.isoformat()}"
    assert fw.window_id("surplus", "rec-demo", start, end) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert start.isoformat() == "2026-06-15T08:00:00+00:00"


def test_surplus_rule_edges():
    net = {2: 5.0, 3: 5.0, 4: 5.0, 5: 5.0, 6: 5.0,  # 00-04 skipped: 05-07 is a 2 h window
           9: 0.5, 10: 0.51,  # 0.5 does not qualify: 10 alone is dropped
           12: 1, 13: 1, 14: 1, 15: 1, 16: 1,  # 5 h -> 3 h + 2 h
           20: 1, 21: 1, 22: 1, 23: 1}  # 4 h -> 2 h + 2 h, up to midnight
    windows = fw.surplus_windows(hourly_exchange(JUNE, net), COMMUNITY, TZ)
    spans = [(s.tz_convert(TZ).strftime("%H:%M"), e.tz_convert(TZ).strftime("%H:%M"))
             for s, e in zip(windows["window_start"], windows["window_end"])]
    assert spans == [("05:00", "07:00"), ("12:00", "15:00"), ("15:00", "17:00"), ("20:00", "22:00"),
                     ("22:00", "00:00")]
    assert windows["community_kwh"].tolist() == [10.0, 3.0, 2.0, 2.0, 2.0]
    assert set(windows["ts_date"]) == {JUNE} and windows["device_id"].isna().all()
    assert fw.cut_group(local(JUNE, 8), local(JUNE, 15)) == [(local(JUNE, 8), local(JUNE, 11)),
                                                             (local(JUNE, 11), local(JUNE, 13)),
                                                             (local(JUNE, 13), local(JUNE, 15))]


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_surplus_on_dst_days_uses_local_hours(day):
    net = {h: 2.0 for h in range(24)}
    windows = fw.surplus_windows(hourly_exchange(day, net), COMMUNITY, TZ)
    first = windows.iloc[0]
    assert first["window_start"].tz_convert(TZ).hour == 5 and first["ts_date"] == day
    assert windows["window_end"].max() == pd.Timestamp(local_day_bounds(day, TZ)[1])
    assert ((windows["window_end"] - windows["window_start"]) <= pd.Timedelta(hours=3)).all()


def test_demo_community_windows_and_device_enrichment(june):
    day = fw.build_flex_windows(JUNE, COMMUNITY, TZ, exchange=june["exchange"], device_history=june["history"],
                                prices=None, flexible_share=0.3)
    again = fw.build_flex_windows(JUNE, COMMUNITY, TZ, exchange=june["exchange"], device_history=june["history"],
                                  prices=None, flexible_share=0.3)
    pd.testing.assert_frame_equal(day, again)  # deterministic, ids included
    community = day[day["device_id"].isna()]
    assert len(community) >= 2 and (community["source"] == "surplus").all()  # a sunny June day
    assert (community["window_start"].dt.tz_convert(TZ).dt.hour >= 5).all()
    devices = day[day["device_id"].notna()]
    assert devices["device_id"].nunique() == sum(1 for _ in set(june["history"]["device_id"]))
    for window in community.itertuples():
        rows = devices[(devices["window_start"] == window.window_start) & (devices["window_end"] == window.window_end)]
        assert rows["estimated_kwh"].sum() <= window.community_kwh + 1e-9
        assert (rows["reward_points_estimated"] == (rows["estimated_kwh"] * 10).round().astype(int)).all()
        assert rows["confidence"].between(0, 1).all()
    assert day["window_id"].is_unique


def test_device_estimates_scale_down_to_the_community_energy(june):
    windows = fw.surplus_windows(hourly_exchange(JUNE, {12: 0.6, 13: 0.6}), COMMUNITY, TZ)
    devices = fw.enrich_devices(windows, june["history"], TZ, 0.3)
    assert devices["estimated_kwh"].sum() <= 1.2 + 1e-9
    assert devices["estimated_kwh"].sum() == pytest.approx(1.2, abs=0.4)


# --- price rule --------------------------------------------------------------------------------


def test_price_windows_from_ckw_prices():
    prices = ckw_prices(datetime(2026, 6, 16, 12, tzinfo=ZRH), JUNE, JUNE + timedelta(days=1))
    start = local(JUNE, 0)
    horizon = fw.price_horizon(prices, start)
    assert len(horizon) == 24 and horizon.index[0] == pd.Timestamp(start)
    lo, hi = horizon.min(), horizon.max()
    windows = fw.price_windows(prices, start, COMMUNITY, hourly_exchange(JUNE, {}), TZ, 0.3)
    assert len(windows) >= 1 and (windows["source"] == "price").all() and windows["estimated_kwh"].isna().all()
    for w in windows.itertuples():
        hours = pd.date_range(w.window_start, w.window_end, freq="h", inclusive="left")
        assert (horizon.loc[hours] <= lo + (hi - lo) / 3).all()
        assert 2 <= len(hours) <= 3 and hours[0].tz_convert(TZ).hour >= 5
        assert w.community_kwh == pytest.approx(0.3 * 10.0 * len(hours))
    flat = pd.Series(0.2, index=horizon.index)
    assert fw.price_windows(flat, start, COMMUNITY, None, TZ, 0.3).empty


def test_price_horizon_falls_back_to_the_last_24_published_hours():
    prices = ckw_prices(datetime(2026, 6, 15, 9, tzinfo=ZRH), JUNE - timedelta(days=1), JUNE)  # tomorrow unpublished
    horizon = fw.price_horizon(prices, local(JUNE, 12))
    assert len(horizon) == 24 and horizon.index[-1] == prices.index[-1]


# --- forecast rule -----------------------------------------------------------------------------


def test_forecast_runs_merge_and_reward():
    now = local(JUNE, 4, 30)
    hours = pd.date_range(local(JUNE, 4), periods=24, freq="h")
    prediction = np.where((hours.tz_convert(TZ).hour >= 4) & (hours.tz_convert(TZ).hour < 8), 1.234, 0.1)
    prediction[hours.tz_convert(TZ).hour == 10] = 0.51
    forecast = pd.DataFrame({"datetime": hours, "prediction": prediction,
                             "period": [period_key(h) for h in hours.tz_convert(TZ).hour],
                             "lower": prediction - 0.1, "upper": prediction + 0.1})
    windows = fw.forecast_windows(forecast, now, COMMUNITY, TZ)
    spans = [(s.tz_convert(TZ).hour, e.tz_convert(TZ).hour) for s, e in zip(windows["window_start"],
                                                                          windows["window_end"])]
    assert spans == [(5, 8), (10, 11)]  # 04:00 is too early; runs of consecutive hours merged
    assert windows["estimated_kwh"].tolist() == [3.7, 0.51]
    assert windows["reward_points_estimated"].tolist() == [37, 5]


def test_seasonal_naive_forecast_of_the_demo_community(registry):
    members = registry.all_members(COMMUNITY)
    now = local(JUNE, 9, 20)
    history = community_exchange(members, now - timedelta(days=7), now, TZ)
    forecast = fw.forecast_net_exchange(history, now, TZ)
    assert len(forecast) == 24 and forecast["datetime"].iloc[0] == pd.Timestamp(local(JUNE, 9))
    assert (forecast["lower"] <= forecast["prediction"]).all() and (forecast["prediction"] <= forecast["upper"]).all()
    assert fw.forecast_windows(forecast, now, COMMUNITY, TZ)["estimated_kwh"].gt(0).all()


# --- suggestions -------------------------------------------------------------------------------


def _windows(rows: list[dict]) -> pd.DataFrame:
    return fw.frame([fw._row(r.get("source", "surplus"), COMMUNITY, r.get("device"), r["start"], r["end"], TZ,
                             community_kwh=r.get("kwh", 1.0), estimated_kwh=r.get("est"), reward=r.get("reward"),
                             confidence=r.get("conf")) for r in rows])


def test_suggestion_selection_drops_ranking_and_fields():
    today, tomorrow = JUNE, JUNE + timedelta(days=1)
    now = local(today, 9, 30)
    rows = [
        {"start": local(today, 7), "end": local(today, 9), "kwh": 99},  # already over
        {"start": local(today, 9), "end": local(today, 11), "kwh": 3},  # running: kept
        {"start": local(today, 18), "end": local(today, 21), "kwh": 4},  # ends exactly 21:00: kept
        {"start": local(today, 19), "end": local(today, 21, 15), "kwh": 50},  # after 21:00: dropped
        {"start": local(today, 12), "end": local(today, 14), "kwh": 2},  # enriched below
        {"start": local(today, 12), "end": local(today, 14), "device": "me", "est": 0.4, "reward": None,
         "conf": 0.7},
        {"start": local(today, 14), "end": local(today, 16), "kwh": 1},
        {"start": local(today, 14), "end": local(today, 16), "device": "me", "est": 0.9, "reward": 9, "conf": 0.5},
        {"start": local(today, 14), "end": local(today, 16), "device": "someone-else", "est": 5.0, "reward": 50},
        {"start": local(tomorrow, 10), "end": local(tomorrow, 13), "kwh": 7},
        {"start": local(tomorrow + timedelta(days=1), 10), "end": local(tomorrow + timedelta(days=1), 12),
         "kwh": 100},  # the day after tomorrow: not selected
    ]
    windows = _windows(rows)
    held = fw.window_id("surplus", COMMUNITY, local(today, 9), local(today, 11))
    malformed = windows.iloc[[0]].assign(window_id="bad", window_end=pd.NaT)
    result = build_suggestions(pd.concat([windows, malformed]), device_id="me", committed={"other"}, now=now, tz=TZ)
    assert [r["to_time"] for r in result] == ["14:00", "12:00", "10:00", "18:00", "09:00"]
    first, tomorrow_item = result[0], result[2]
    assert first == {
        "id": fw.window_id("surplus", COMMUNITY, local(today, 14), local(today, 16)),
        "suggestion_type": "shift-consumption",
        "period_start": "2026-06-15T12:00:00+00:00", "period_end": "2026-06-15T14:00:00+00:00",
        "from_period": "", "clock_range": "14:00\u201316:00", "to_is_tomorrow": False, "to_period": "afternoon",
        "to_time": "14:00", "impact_kwh_estimated": 0.9, "reward_points": 9, "confidence": 0.5,
        "community_kwh": 1.0}
    assert result[1]["reward_points"] == 0  # enriched, null reward -> 0
    assert result[3]["reward_points"] is None and result[3]["impact_kwh_estimated"] is None
    assert (tomorrow_item["from_period"], tomorrow_item["clock_range"], tomorrow_item["to_is_tomorrow"],
            tomorrow_item["to_period"]) == ("evening", "17:00\u201321:00", True, "morning")
    held_out = build_suggestions(windows, device_id="me", committed={held}, now=now, tz=TZ)
    assert "09:00" not in [r["to_time"] for r in held_out]
    assert build_suggestions(windows, device_id=None, committed=(), now=now, tz=TZ)[0]["to_time"] == "10:00"


def test_at_most_eight_and_deterministic():
    rows = [{"start": local(JUNE, h), "end": local(JUNE, h + 1), "kwh": float(h)} for h in range(10, 20)]
    windows = _windows(rows)
    first = build_suggestions(windows, device_id=None, committed=(), now=local(JUNE, 9), tz=TZ)
    assert len(first) == 8 and [r["community_kwh"] for r in first] == [19.0, 18.0, 17.0, 16.0, 15.0, 14.0, 13.0, 12.0]
    assert build_suggestions(windows.sample(frac=1, random_state=3), device_id=None, committed=(),
                             now=local(JUNE, 9), tz=TZ) == first


def test_period_keys_cover_the_day():
    assert [period_key(h) for h in (0, 4, 5, 7, 8, 10, 11, 12, 13, 14, 16, 17, 20, 21, 23)] == [
        "night", "night", "early_morning", "early_morning", "morning", "morning", "late_morning", "midday",
        "midday", "afternoon", "afternoon", "evening", "evening", "night", "night"]
    assert sum(len(hours) for hours, _ in PERIODS.values()) == 24
    assert all("\u2013" in clock for _, clock in PERIODS.values())
