"""Flexibility windows (flexibility.md §1): ids, the three sources and per-device enrichment.

All functions are pure: the same inputs give the same rows, ids included (re-materialising a
partition reproduces it). Times are timezone-aware UTC; the local zone decides hours of the
day and ``ts_date``. Windows are half-open ``[window_start, window_end)``.

Platform choices where the seed left a gap:

* a qualifying group longer than 3 h is cut into ``ceil(L/3)`` windows as even as possible,
  longer ones first (5 h -> 3 + 2, 7 h -> 3 + 2 + 2), so no piece is shorter than 2 h;
* ``community_kwh`` is the surplus energy Σ ``net_exchange_kwh`` for ``surplus`` windows,
  Σ ``prediction`` for ``forecast`` windows and the flexible share of the community's
  consumption for ``price`` windows;
* a device's ``estimated_kwh`` is the flexible share of its mean consumption in the same
  local clock interval over the previous days; ``confidence`` is ``1 - std/mean`` of those
  daily sums, clipped to [0, 1].
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from grid_platform.flexibility.periods import period_key

SOURCES = ("surplus", "forecast", "price")
COLUMNS = ["window_id", "source", "community_id", "device_id", "ts_date", "window_start", "window_end",
           "community_kwh", "estimated_kwh", "reward_points_estimated", "confidence", "flexibility_model"]
SURPLUS_THRESHOLD_KWH = 0.5
FORECAST_THRESHOLD_KWH = 0.5
FIRST_HOUR = 5  # hours starting 00:00-04:00 never qualify
MIN_HOURS, MAX_HOURS = 2, 3
FORECAST_MERGE_GAP = timedelta(minutes=5)
HOUR = timedelta(hours=1)
MODELS = {"surplus": "surplus-net-exchange-v1", "forecast": "forecast-7d-mean-v1", "price": "price-lower-third-v1"}
DEVICE_MODEL = "device-window-mean-v1"


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def window_id(source: str, scope_id: str, start: datetime, end: datetime) -> str:
    """First 16 hex of sha256 over ``source|scope_id|start|end`` (UTC ISO, ``+00:00``)."""
    text = "|".join((source, scope_id, iso_utc(start), iso_utc(end)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def empty_windows() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    for c in ("window_start", "window_end"):
        frame[c] = pd.Series(dtype="datetime64[us, UTC]")
    for c in ("community_kwh", "estimated_kwh", "confidence"):
        frame[c] = pd.Series(dtype="float64")
    frame["reward_points_estimated"] = pd.Series(dtype="Int64")
    return frame


def _hours(ts: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(ts)
    if index.tz is None:  # upstream gold tables store naive UTC
        index = index.tz_localize("UTC")
    return index.tz_convert("UTC")


def _consecutive_groups(hours: pd.DatetimeIndex) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` of each run of consecutive hour starts (sorted, unique)."""
    groups: list[tuple[datetime, datetime]] = []
    for h in sorted(set(hours)):
        h = h.to_pydatetime()
        if groups and groups[-1][1] == h:
            groups[-1] = (groups[-1][0], h + HOUR)
        else:
            groups.append((h, h + HOUR))
    return groups


def cut_group(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """A group of whole hours as windows of 2-3 h (none when shorter than 2 h)."""
    length = round((end - start) / HOUR)
    if length < MIN_HOURS:
        return []
    pieces = math.ceil(length / MAX_HOURS)
    base, extra = divmod(length, pieces)
    out, cursor = [], start
    for i in range(pieces):
        size = base + (1 if i < extra else 0)
        out.append((cursor, cursor + size * HOUR))
        cursor += size * HOUR
    return out


def grouped_windows(hours: pd.DatetimeIndex, qualifies: np.ndarray, tz: str) -> list[tuple[datetime, datetime]]:
    """The surplus grouping: qualifying hours starting at 05:00 local or later, runs of >= 2 h cut to <= 3 h."""
    hours = _hours(hours)
    late_enough = np.asarray(hours.tz_convert(tz).hour) >= FIRST_HOUR
    keep = hours[np.asarray(qualifies, dtype=bool) & late_enough]
    return [w for g in _consecutive_groups(keep) for w in cut_group(*g)]


def _row(source: str, community_id: str, device_id: str | None, start: datetime, end: datetime, tz: str, *,
         community_kwh: float, estimated_kwh: float | None = None, reward: int | None = None,
         confidence: float | None = None, model: str | None = None) -> dict:
    return {
        "window_id": window_id(source, device_id or community_id, start, end),
        "source": source, "community_id": community_id, "device_id": device_id,
        "ts_date": pd.Timestamp(start).tz_convert(tz).date(),
        "window_start": pd.Timestamp(start).tz_convert("UTC"), "window_end": pd.Timestamp(end).tz_convert("UTC"),
        "community_kwh": float(community_kwh), "estimated_kwh": estimated_kwh, "reward_points_estimated": reward,
        "confidence": confidence, "flexibility_model": model or MODELS[source],
    }


def frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a windows table in the canonical column order and dtypes, sorted deterministically."""
    if not rows:
        return empty_windows()
    out = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("window_start", "window_end"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[us, UTC]")
    for c in ("community_kwh", "estimated_kwh", "confidence"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    out["reward_points_estimated"] = pd.array(out["reward_points_estimated"], dtype="Int64")
    order = out["device_id"].isna().map({True: 0, False: 1})
    out = out.assign(_order=order).sort_values(["window_start", "window_end", "source", "_order", "device_id"],
                                                kind="stable", na_position="first")
    return out.drop(columns="_order").reset_index(drop=True)


def _window_sum(hourly: pd.DataFrame, column: str, start: datetime, end: datetime) -> float:
    ts = _hours(hourly["ts"])
    mask = (ts >= start) & (ts < end)
    return float(pd.to_numeric(hourly.loc[mask, column], errors="coerce").fillna(0.0).sum())


# --- surplus ----------------------------------------------------------------------------------


def surplus_windows(exchange: pd.DataFrame, community_id: str, tz: str) -> pd.DataFrame:
    """Community rows from hourly ``ts, net_exchange_kwh`` (> 0.5 kWh qualifies)."""
    if exchange.empty:
        return empty_windows()
    net = pd.to_numeric(exchange["net_exchange_kwh"], errors="coerce").to_numpy()
    windows = grouped_windows(exchange["ts"], np.nan_to_num(net, nan=-math.inf) > SURPLUS_THRESHOLD_KWH, tz)
    return frame([_row("surplus", community_id, None, s, e, tz,
                       community_kwh=round(_window_sum(exchange, "net_exchange_kwh", s, e), 3))
                  for s, e in windows])


# --- price ------------------------------------------------------------------------------------


def hourly_prices(slots: pd.DataFrame, tariff_type: str = "integrated") -> pd.Series:
    """Hourly price (mean of the hour's slots) from ``ckw_prices`` rows ``slot_start, tariff_type, value``."""
    rows = slots[slots["tariff_type"] == tariff_type] if "tariff_type" in slots else slots
    ts = _hours(rows["slot_start"])
    values = pd.to_numeric(rows["value"], errors="coerce").to_numpy(dtype="float64")
    series = pd.Series(values, index=ts).dropna()
    return series.groupby(series.index.floor("h")).mean().sort_index()


def price_horizon(prices: pd.Series, start: datetime) -> pd.Series:
    """The 24 hours from the hour of ``start`` if all are published, else the last 24 published."""
    begin = pd.Timestamp(start).tz_convert("UTC").floor("h")
    wanted = pd.date_range(begin, periods=24, freq="h")
    if wanted.isin(prices.index).all():
        return prices.loc[wanted]
    return prices.iloc[-24:]


def price_intervals(prices: pd.Series, start: datetime, tz: str) -> list[tuple[datetime, datetime]]:
    """Cheap-hour windows: price <= lo + (hi - lo)/3 over the horizon; a flat horizon has none."""
    horizon = price_horizon(prices, start)
    if horizon.empty:
        return []
    lo, hi = float(horizon.min()), float(horizon.max())
    if hi == lo:
        return []
    return grouped_windows(horizon.index, (horizon <= lo + (hi - lo) / 3).to_numpy(), tz)


def price_windows(prices: pd.Series, start: datetime, community_id: str, community_hourly: pd.DataFrame | None,
                  tz: str, flexible_share: float) -> pd.DataFrame:
    """Community rows of the price rule; ``community_kwh`` from the community's hourly consumption."""
    rows = []
    for s, e in price_intervals(prices, start, tz):
        used = 0.0 if community_hourly is None or community_hourly.empty else _window_sum(
            community_hourly, "consumption_kwh", s, e)
        rows.append(_row("price", community_id, None, s, e, tz, community_kwh=round(flexible_share * used, 3)))
    return frame(rows)


# --- forecast ---------------------------------------------------------------------------------


def forecast_net_exchange(history: pd.DataFrame, now: datetime, tz: str, days: int = 7) -> pd.DataFrame:
    """Community forecast for ``[now, now + 24 h)`` by hour: ``datetime, prediction, period, lower, upper``.

    Seasonal-naive: the mean (min, max) of the net exchange at the same local hour of day over
    the last ``days`` days of ``history`` (hourly ``ts, net_exchange_kwh`` before ``now``).
    """
    begin = pd.Timestamp(now).tz_convert("UTC").floor("h")
    hours = pd.date_range(begin, periods=24, freq="h")
    ts = _hours(history["ts"])
    recent = (ts < begin) & (ts >= begin - pd.Timedelta(days=days))
    past = pd.DataFrame({"hour": ts[recent].tz_convert(tz).hour,
                         "net": pd.to_numeric(history.loc[recent, "net_exchange_kwh"], errors="coerce")}).dropna()
    stats = past.groupby("hour")["net"].agg(["mean", "min", "max"])
    local_hours = hours.tz_convert(tz).hour
    stats = stats.reindex(local_hours)
    return pd.DataFrame({
        "datetime": hours,
        "prediction": stats["mean"].round(3).to_numpy(),
        "period": [period_key(h) for h in local_hours],
        "lower": stats["min"].to_numpy(),
        "upper": stats["max"].to_numpy(),
    }).dropna(subset=["prediction"]).reset_index(drop=True)


def forecast_intervals(forecast: pd.DataFrame, now: datetime, tz: str) -> list[tuple[datetime, datetime, float]]:
    """Runs of forecast hours (prediction > 0.5, local start hour >= 5) merged across gaps <= 5 min."""
    start = pd.Timestamp(now).tz_convert("UTC")
    ts = _hours(forecast["datetime"])
    prediction = pd.to_numeric(forecast["prediction"], errors="coerce").to_numpy(dtype="float64")
    keep = (ts >= start.floor("h")) & (ts < start + pd.Timedelta(hours=24)) & (np.nan_to_num(prediction) > 0.5)
    keep &= np.asarray(ts.tz_convert(tz).hour) >= FIRST_HOUR
    runs: list[list] = []
    for t, p in sorted(zip(ts[keep], prediction[keep])):
        t = t.to_pydatetime()
        if runs and t <= runs[-1][1] + FORECAST_MERGE_GAP:
            runs[-1][1] = max(runs[-1][1], t + HOUR)
            runs[-1][2] += float(p)
        else:
            runs.append([t, t + HOUR, float(p)])
    return [(s, e, total) for s, e, total in runs if e - s >= HOUR]


def forecast_windows(forecast: pd.DataFrame, now: datetime, community_id: str, tz: str) -> pd.DataFrame:
    rows = []
    for s, e, total in forecast_intervals(forecast, now, tz):
        kwh = round(total, 2)
        rows.append(_row("forecast", community_id, None, s, e, tz, community_kwh=kwh, estimated_kwh=kwh,
                         reward=round(kwh * 10)))
    return frame(rows)


# --- per-device enrichment --------------------------------------------------------------------


def device_expectations(windows: pd.DataFrame, history: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Per (window, device): mean and std of the device's daily consumption in the window's local clock interval.

    ``history``: hourly ``ts, device_id, consumption_kwh`` of the previous days (non-numeric = 0).
    """
    out = []
    if windows.empty or history.empty:
        return pd.DataFrame(columns=["window_id", "device_id", "mean_kwh", "std_kwh"])
    local = _hours(history["ts"]).tz_convert(tz)
    hist = pd.DataFrame({"device_id": history["device_id"].to_numpy(), "day": local.date,
                         "hour": np.asarray(local.hour) + np.asarray(local.minute) / 60.0,
                         "kwh": pd.to_numeric(history["consumption_kwh"], errors="coerce").fillna(0.0).to_numpy()})
    days = pd.Index(sorted(set(hist["day"])))
    devices = pd.Index(sorted(set(hist["device_id"])))
    for w in windows.itertuples(index=False):
        # The same local clock interval on each past day (the part before midnight, if it crosses).
        start_local = pd.Timestamp(w.window_start).tz_convert(tz)
        first = start_local.hour + start_local.minute / 60.0
        last = first + (w.window_end - w.window_start) / pd.Timedelta(hours=1)
        in_window = hist[(hist["hour"] >= first) & (hist["hour"] < last)]
        daily = in_window.groupby(["device_id", "day"])["kwh"].sum().unstack("day")
        daily = daily.reindex(index=devices, columns=days).fillna(0.0)
        out.append(pd.DataFrame({"window_id": w.window_id, "device_id": devices,
                                 "mean_kwh": daily.mean(axis=1).to_numpy(),
                                 "std_kwh": daily.std(axis=1, ddof=0).to_numpy()}))
    return pd.concat(out, ignore_index=True)


def enrich_devices(windows: pd.DataFrame, history: pd.DataFrame, tz: str, flexible_share: float) -> pd.DataFrame:
    """Device rows for the community ``surplus`` windows.

    ``estimated_kwh`` = flexible share x expected window consumption, scaled so that the sum
    over devices stays <= ``community_kwh`` (rounded down to 1 Wh); reward = round(kWh x 10).
    """
    surplus = windows[(windows["source"] == "surplus") & windows["device_id"].isna()]
    expectations = device_expectations(surplus, history, tz)
    if expectations.empty:
        return empty_windows()
    rows = []
    for w in surplus.itertuples(index=False):
        e = expectations[expectations["window_id"] == w.window_id]
        estimate = flexible_share * e["mean_kwh"].to_numpy()
        total = estimate.sum()
        if total > w.community_kwh:
            estimate = estimate * (max(w.community_kwh, 0.0) / total)
        estimate = np.floor(estimate * 1000 + 1e-9) / 1000
        mean = e["mean_kwh"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            confidence = np.where(mean > 0, np.clip(1 - e["std_kwh"].to_numpy() / mean, 0, 1), 0.0)
        for device, kwh, conf in zip(e["device_id"], estimate, confidence):
            rows.append(_row("surplus", w.community_id, device, w.window_start.to_pydatetime(),
                             w.window_end.to_pydatetime(), tz, community_kwh=w.community_kwh,
                             estimated_kwh=float(kwh), reward=round(float(kwh) * 10),
                             confidence=round(float(conf), 2), model=DEVICE_MODEL))
    return frame(rows)


def build_flex_windows(day: date, community_id: str, tz: str, *, exchange: pd.DataFrame,
                       device_history: pd.DataFrame, prices: pd.Series | None,
                       forecast: pd.DataFrame | None = None, forecast_now: datetime | None = None,
                       flexible_share: float = 0.3) -> pd.DataFrame:
    """All windows of one community for local date ``day`` (the ``flex_windows`` partition).

    ``exchange``: hourly ``ts, consumption_kwh, net_exchange_kwh`` covering the day;
    ``device_history``: hourly device consumption of the previous days; ``prices``: hourly
    integrated prices (None: no price source); ``forecast`` rows with the time they were made.
    """
    midnight = pd.Timestamp(day).tz_localize(tz).tz_convert("UTC").to_pydatetime()
    parts = [surplus_windows(exchange, community_id, tz)]
    if prices is not None and not prices.empty:
        parts.append(price_windows(prices, midnight, community_id, exchange, tz, flexible_share))
    if forecast is not None and forecast_now is not None and not forecast.empty:
        parts.append(forecast_windows(forecast, forecast_now, community_id, tz))
    parts.append(enrich_devices(parts[0], device_history, tz, flexible_share))
    rows = [r for p in parts if not p.empty for r in p.to_dict("records")]
    windows = frame(rows)
    return windows[windows["ts_date"] == day].reset_index(drop=True)
