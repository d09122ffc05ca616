"""Flexibility access for a run or a sensor: the meter-data service, the state database (commitments,
settlement and delivery ledgers), the publications and the nudging/MQTT targets, from settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import dagster as dg
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from grid_platform.alerts.delivery import Channels
from grid_platform.alerts.nudging import NudgingClient, RetryPolicy, token_provider_from_env
from grid_platform.flexibility.config import FlexibilityConfig, load_flexibility_config
from grid_platform.flexibility.meters import MeterClient
from grid_platform.flexibility.notify import Notifier
from grid_platform.flexibility.participants import ParticipantRegistry
from grid_platform.settings import Settings
from grid_platform.store import flexibility as store
from grid_platform.store.db import make_engine, upgrade


@lru_cache(maxsize=8)
def _engine(state_db_url: str) -> Engine:
    """One migrated engine per database and process (sensors evaluate often; migrations run once)."""
    upgrade(state_db_url)
    return make_engine(state_db_url)


@lru_cache(maxsize=4)
def _registry(community_id: str, size: int, seed: int) -> ParticipantRegistry:
    return ParticipantRegistry.demo({community_id: size}, seed)


class FlexibilityResource(dg.ConfigurableResource):
    """Meter data (METER_API_URL), state database (STATE_DB_URL), publications (GRID_DATA_DIR) and
    nudging (NUDGING_API_URL; None: nudges off) and MQTT (MQTT_URL; None: off). The rest of the
    domain configuration (registry, zone, batch size…) comes from ``load_flexibility_config``."""

    meter_api_url: str
    state_db_url: str
    published_dir: str
    nudging_api_url: str | None = None
    mqtt_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> FlexibilityResource:
        return cls(meter_api_url=settings.meter_api_url, state_db_url=settings.state_db_url,
                   published_dir=str(settings.published_dir), nudging_api_url=settings.nudging_api_url,
                   mqtt_url=settings.mqtt_url)

    @property
    def config(self) -> FlexibilityConfig:
        return replace(load_flexibility_config(), meter_api_url=self.meter_api_url.rstrip("/"))

    @property
    def root(self) -> Path:
        return Path(self.published_dir)

    @property
    def registry(self) -> ParticipantRegistry:
        c = self.config
        return _registry(c.community_id, c.registry_size, c.registry_seed)

    @property
    def sessions(self) -> sessionmaker:
        return store.flexibility_sessions(_engine(self.state_db_url))

    @contextmanager
    def meter(self) -> Iterator[MeterClient]:
        with MeterClient(self.meter_api_url) as client:
            yield client

    @contextmanager
    def notifier(self) -> Iterator[Notifier]:
        """Delivers through the delivery ledger of the state database; closed afterwards."""
        nudging = (NudgingClient(self.nudging_api_url, token_provider_from_env(), RetryPolicy.from_env())
                   if self.nudging_api_url else None)
        config = self.config
        with Channels(nudging=nudging) as channels:
            yield Notifier(self.sessions, channels, mqtt_url=self.mqtt_url, topic_prefix=config.mqtt_topic_prefix,
                           notify_committed=config.notify_committed)
