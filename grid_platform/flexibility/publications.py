"""Published flexibility outputs the read API serves (architecture.md "Publications").

* ``flex_windows``: one publication per community and local date (``{community}@{YYYY-MM-DD}``),
  so the daily partitions publish independently; file ``windows.parquet``.
* ``flex_scoring``: one per community; ``daily_points.parquet`` (all days of the current
  season so far) and ``leaderboard.parquet``.
* ``flex_forecast``: one per community, the latest ``[now, now + 24 h)`` forecast
  (``forecast.parquet``, with the instant ``made_at`` it was made at).

Readers raise on a broken publication (the suggestions route turns that into ``[]``); a date
never published simply has no rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from grid_platform import publish
from grid_platform.flexibility import windows as flex_windows

WINDOWS_DATASET = "flex_windows"
SCORING_DATASET = "flex_scoring"
FORECAST_DATASET = "flex_forecast"
WINDOWS_FILE = "windows.parquet"
FORECAST_FILE = "forecast.parquet"
DAILY_FILE, LEADERBOARD_FILE = "daily_points.parquet", "leaderboard.parquet"


def windows_key(community_id: str, day: date) -> str:
    return f"{community_id}@{day.isoformat()}"


def publish_windows(root: Path, community_id: str, day: date, windows: pd.DataFrame) -> publish.Publication:
    rows = windows[(windows["community_id"] == community_id) & (windows["ts_date"] == day)]
    return publish.publish(root, WINDOWS_DATASET, windows_key(community_id, day),
                           lambda tmp: rows.to_parquet(tmp / WINDOWS_FILE, index=False),
                           extra={"rows": len(rows), "community_id": community_id, "date": day.isoformat()})


def read_windows(root: Path, community_id: str, days: Iterable[date]) -> pd.DataFrame:
    parts = []
    for day in days:
        current = publish.current(root, WINDOWS_DATASET, windows_key(community_id, day))
        if current is not None:
            parts.append(pd.read_parquet(current.file(WINDOWS_FILE)))
    if not parts:
        return flex_windows.empty_windows()
    return pd.concat(parts, ignore_index=True)


def publish_scoring(root: Path, community_id: str, daily: pd.DataFrame, board: pd.DataFrame) -> publish.Publication:
    def write(tmp: Path) -> None:
        daily.to_parquet(tmp / DAILY_FILE, index=False)
        board.to_parquet(tmp / LEADERBOARD_FILE, index=False)

    return publish.publish(root, SCORING_DATASET, community_id, write, extra={"members": len(board)})


def read_scoring(root: Path, community_id: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    current = publish.current(root, SCORING_DATASET, community_id)
    if current is None:
        return None
    daily = pd.read_parquet(current.file(DAILY_FILE))
    board = pd.read_parquet(current.file(LEADERBOARD_FILE))
    for frame, columns in ((daily, ("day",)), (board, ("season_start", "season_end"))):
        for c in columns:
            frame[c] = pd.to_datetime(frame[c]).dt.date
    return daily, board


def publish_forecast(root: Path, community_id: str, forecast: pd.DataFrame, made_at: datetime) -> publish.Publication:
    rows = forecast.assign(made_at=pd.Timestamp(made_at).tz_convert("UTC"))
    return publish.publish(root, FORECAST_DATASET, community_id,
                           lambda tmp: rows.to_parquet(tmp / FORECAST_FILE, index=False),
                           extra={"rows": len(rows), "made_at": rows["made_at"].iloc[0].isoformat() if len(rows) else None})


def read_forecast(root: Path, community_id: str) -> tuple[pd.DataFrame, datetime] | None:
    """The community's latest forecast rows and the instant they were made; None before the first."""
    current = publish.current(root, FORECAST_DATASET, community_id)
    if current is None:
        return None
    rows = pd.read_parquet(current.file(FORECAST_FILE))
    if rows.empty:
        return None
    return rows.drop(columns="made_at"), rows["made_at"].iloc[0].to_pydatetime()
