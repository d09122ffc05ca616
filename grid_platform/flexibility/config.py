"""Configuration of the flexibility domain (flexibility.md), from the environment.

Paths, the state database, the meter-data service, the nudging and MQTT targets and the
local zone come from ``grid_platform.settings`` (``GRID_LOCAL_TZ``, ``METER_API_URL``,
``NUDGING_API_URL``, ``MQTT_URL``, ``STATE_DB_URL``); this module adds what only flexibility reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from grid_platform.settings import STANDIN_PORTS, Settings, load_settings

DEMO_COMMUNITY = "rec-demo"


@dataclass(frozen=True)
class FlexibilityConfig:
    local_timezone: str = "Europe/Zurich"
    meter_api_url: str = f"http://127.0.0.1:{STANDIN_PORTS['meters']}"
    # Pre-window reminder lead (§5.1); the seed's earlier version used 15 min.
    reminder_lead: timedelta = timedelta(minutes=30)
    mqtt_topic_prefix: str = "celine"
    # The demo registry (participants.py): one community, deterministic for the seed.
    community_id: str = DEMO_COMMUNITY
    registry_size: int = 300
    registry_seed: int = 2026
    # Share of a participant's expected window consumption that can be moved (window impact).
    flexible_share: float = 0.3
    # Days of history behind a participant's expected window load and its confidence.
    expectation_days: int = 28
    settlement_batch_size: int = 1000
    # Season of the leaderboard: calendar quarters by default (months per season).
    season_months: int = 3
    # Community points budget per day (None: unlimited); a larger total is scaled down proportionally.
    daily_points_budget: float | None = None
    # flexibility_committed nudges on accept only when NUDGING_API_URL is set explicitly (§5.4).
    notify_committed: bool = False


def load_flexibility_config(environ: Mapping[str, str] | None = None,
                            settings: Settings | None = None) -> FlexibilityConfig:
    env = os.environ if environ is None else environ
    get = lambda name: env.get(name) or None
    settings = settings or load_settings()
    d = FlexibilityConfig()
    budget = get("FLEX_DAILY_POINTS_BUDGET")
    return FlexibilityConfig(
        local_timezone=settings.local_timezone,
        meter_api_url=settings.meter_api_url,
        reminder_lead=timedelta(minutes=float(get("FLEX_REMINDER_LEAD_MIN") or 30)),
        mqtt_topic_prefix=(get("FLEX_MQTT_TOPIC_PREFIX") or d.mqtt_topic_prefix).strip("/"),
        community_id=get("FLEX_COMMUNITY_ID") or d.community_id,
        registry_size=int(get("FLEX_REGISTRY_SIZE") or d.registry_size),
        registry_seed=int(get("FLEX_REGISTRY_SEED") or d.registry_seed),
        flexible_share=float(get("FLEX_FLEXIBLE_SHARE") or d.flexible_share),
        expectation_days=int(get("FLEX_EXPECTATION_DAYS") or d.expectation_days),
        settlement_batch_size=int(get("FLEX_SETTLEMENT_BATCH") or d.settlement_batch_size),
        season_months=int(get("FLEX_SEASON_MONTHS") or d.season_months),
        daily_points_budget=float(budget) if budget else None,
        notify_committed=get("NUDGING_API_URL") is not None,
    )
