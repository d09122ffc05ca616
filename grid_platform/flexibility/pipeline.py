"""The flexibility jobs as plain functions: what the Dagster assets and sensors call (no Dagster here).

| Dagster piece (lead's wiring) | function |
|---|---|
| ``flex_windows`` asset, daily partitions (local date), per community | ``integrated_prices`` + ``windows_for_day`` + ``publications.publish_windows`` |
| ``community_forecast`` asset (hourly) | ``community_forecast`` |
| ``device_consumption_hourly`` asset, daily partitions (UTC date) | ``settlement_readings`` |
| settlement sensor on that asset's materialisations | ``run_settlement`` (``settlement_date`` for the day) |
| reminders sensor (~5 min, and on meter-data arrival) | ``notify.sweep_reminders`` |
| opportunity sensor on ``community_forecast`` | ``send_opportunities`` |
| ``flex_scoring`` asset, daily partitions (local date), per community, on the 15-min meter data | ``score_community_day`` + ``publications.publish_scoring`` |
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.orm import sessionmaker

from grid_platform.flexibility import gamification, nudges, windows
from grid_platform.flexibility.config import FlexibilityConfig
from grid_platform.flexibility.meters import MeterClient
from grid_platform.flexibility.notify import Notifier, settle_and_notify
from grid_platform.flexibility.participants import ParticipantRegistry
from grid_platform.flexibility.settlement import SettlementReport
from grid_platform.store import flexibility as store

PRICES_SQL = """
    select slot_start, tariff_type, value from raw.ckw_prices
    where tariff_type = 'integrated' and tariff_name = ? and slot_start >= ? and slot_start < ?
    order by slot_start
"""
FORECAST_HISTORY_DAYS = 7
STREAK_HISTORY_DAYS = 366  # longer than any streak a season can hold


def integrated_prices(con: Any, start: datetime, end: datetime, tariff_name: str = "home_dynamic") -> pd.Series:
    """Hourly CKW ``integrated`` prices from the warehouse (``raw.ckw_prices``, a DuckDB connection)."""
    return windows.hourly_prices(con.execute(PRICES_SQL, [tariff_name, start, end]).df())


def windows_for_day(day: date, community_id: str, meter: MeterClient, config: FlexibilityConfig, *,
                    prices: pd.Series | None = None, forecast: pd.DataFrame | None = None,
                    forecast_now: datetime | None = None) -> pd.DataFrame:
    """The ``flex_windows`` partition: the day's exchange, the devices' previous ``expectation_days``."""
    exchange = meter.community_exchange(community_id, day, day)
    history = meter.community_consumption(community_id, day - timedelta(days=config.expectation_days),
                                          day - timedelta(days=1), "1h")
    return windows.build_flex_windows(day, community_id, config.local_timezone, exchange=exchange,
                                      device_history=history, prices=prices, forecast=forecast,
                                      forecast_now=forecast_now, flexible_share=config.flexible_share)


def community_forecast(community_id: str, meter: MeterClient, now: datetime, config: FlexibilityConfig
                       ) -> pd.DataFrame:
    """Forecast rows ``datetime, prediction, period, lower, upper`` for ``[now, now + 24 h)``."""
    today = pd.Timestamp(now).tz_convert(config.local_timezone).date()
    history = meter.community_exchange(community_id, today - timedelta(days=FORECAST_HISTORY_DAYS), today)
    return windows.forecast_net_exchange(history, now, config.local_timezone, FORECAST_HISTORY_DAYS)


def settlement_readings(community_id: str, day: date, meter: MeterClient) -> pd.DataFrame:
    """Hourly device rows of UTC ``day`` (local days ``day`` and ``day + 1`` cover it in Zurich)."""
    rows = meter.community_consumption(community_id, day, day + timedelta(days=1), "1h")
    start, end = store.utc_day_bounds(day)
    return rows[(rows["ts"] >= start) & (rows["ts"] < end)].reset_index(drop=True)


def run_settlement(sessions: sessionmaker, notifier: Notifier | None, day: date, readings: pd.DataFrame,
                   config: FlexibilityConfig, *, run_id: str | None = None) -> tuple[SettlementReport, dict[str, int]]:
    return settle_and_notify(sessions, notifier, day, readings, batch_size=config.settlement_batch_size,
                             run_id=run_id)


def send_opportunities(registry: ParticipantRegistry, forecasts: dict[str, pd.DataFrame], now: datetime,
                       notifier: Notifier, config: FlexibilityConfig) -> dict[str, int]:
    """§5.3 for every community of the registry, from each community's forecast rows."""
    def forecast_windows(community: str) -> pd.DataFrame:
        rows = forecasts.get(community)
        if rows is None or rows.empty:
            return windows.empty_windows()
        return windows.forecast_windows(rows, now, community, config.local_timezone)

    counts: dict[str, int] = {}
    for event in nudges.opportunity_events(registry.communities, registry.members, forecast_windows):
        state = notifier.send(event)
        counts[state] = counts.get(state, 0) + 1
    return counts


def score_community_day(day: date, community_id: str, registry: ParticipantRegistry, sessions: sessionmaker, *,
                        consumption: pd.DataFrame, history: pd.DataFrame, community: pd.DataFrame,
                        previous_daily: pd.DataFrame, config: FlexibilityConfig
                        ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Daily points of local ``day`` and the season leaderboard: (season's daily rows, bonus rows, leaderboard).

    15-min inputs from the warehouse's meter data: ``consumption`` of the day and ``history`` of
    the previous 30 days (``ts, device_id, consumption_kwh``), the community's ``community``
    rows of the day (``ts, production_kwh, consumption_kwh``); ``previous_daily``: the
    published daily rows so far.
    """
    tz = config.local_timezone
    members = pd.DataFrame([(p.device_id, p.recipient) for p in registry.all_members(community_id) if p.device_id],
                           columns=["device_id", "user_id"])
    settled, action_days = _settled_commitments(sessions, members, day, tz)
    daily, bonus = gamification.score_day(day, tz, members=members, consumption=consumption, history=history,
                                          community=community, settled=settled, previous_daily=previous_daily,
                                          action_days=action_days, budget=config.daily_points_budget)
    season = gamification.season_bounds(day, config.season_months)
    kept = previous_daily[(previous_daily["day"] >= season[0]) & (previous_daily["day"] != day)]
    parts = [frame for frame in (kept, daily) if not frame.empty]
    all_daily = (pd.concat(parts, ignore_index=True) if parts else daily).sort_values(["day", "user_id"])
    all_daily = all_daily.reset_index(drop=True)
    board = gamification.leaderboard(all_daily, {p.recipient for p in registry.all_members(community_id)}, season)
    return all_daily, bonus, board


def _settled_commitments(sessions: sessionmaker, members: pd.DataFrame, day: date, tz: str
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Settled commitments of the members' devices on local ``day``, and the days each user acted."""
    start = pd.Timestamp(day).tz_localize(tz)
    first, end = (start - pd.Timedelta(days=STREAK_HISTORY_DAYS)).to_pydatetime(), (start + pd.Timedelta(days=1))
    with sessions() as session:
        rows = store.settled_between(session, list(members["device_id"]), first, end.to_pydatetime())
    frame = pd.DataFrame([(r.id, r.user_id, r.device_id, r.period_start, r.period_end, r.reward_points_estimated)
                          for r in rows], columns=["commitment_id", "user_id", "device_id", "period_start",
                                                   "period_end", "reward_points_estimated"])
    local_day = pd.to_datetime(frame["period_start"], utc=True).dt.tz_convert(tz).dt.date
    action_days = pd.DataFrame({"user_id": frame["user_id"], "day": local_day}).drop_duplicates()
    return frame[local_day == day].reset_index(drop=True), action_days
