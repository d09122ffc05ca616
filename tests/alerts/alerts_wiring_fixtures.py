"""Builders for the Dagster wiring tests of alerts: a network with rules and published risk data
for today, the ``alerts`` resource on it, and a stand-in of the risk publication asset so runs
that "published risk data" exist in a real Dagster instance without running the risk model."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
from alerts_fixtures import fragment_day, publish_risk_km
from sqlalchemy.orm import sessionmaker

from grid_platform.assets.alerts import AlertsResource
from grid_platform.assets.risk import PUBLICATION, TZ, risk_partitions
from grid_platform.assets.topology import networks
from grid_platform.store import rules as rule_store

# Fast, bounded retries of the nudging client (RetryPolicy.from_env) and alerts switched on.
ALERT_ENV = {"GRID_ALERTS_ENABLED": "true", "NUDGING_TIMEOUT_S": "2", "NUDGING_MAX_TRIES": "2",
             "NUDGING_BACKOFF_S": "0.01", "NUDGING_BACKOFF_MAX_S": "0.05", "GRID_DISPATCH_LEASE_S": "30"}
NETWORK = "ckw"
GROUPS = 2  # recipient groups of the rules below that trigger


def local_today() -> date:
    return datetime.now(ZoneInfo(TZ)).date()


@dataclass
class AlertGrid:
    published: Path
    state_db_url: str
    today: date

    def resource(self, nudging_url: str, mqtt_url: str | None = None) -> AlertsResource:
        return AlertsResource(state_db_url=self.state_db_url, nudging_api_url=nudging_url,
                              published_dir=str(self.published), mqtt_url=mqtt_url)


def alert_grid(tmp_path: Path, sessions: sessionmaker, state_db_url: str) -> AlertGrid:
    """Network ckw with ALERT wind and WARNING heat km today and two recipient groups."""
    today = local_today()
    day = today.isoformat()
    published = tmp_path / "published"
    publish_risk_km(published, NETWORK, [
        fragment_day(day, "wind", "Sursee", "L1", 1200, "ALERT"),
        fragment_day(day, "heat", "Emmen", "K1", 400, "WARNING"),
        fragment_day((today + timedelta(days=1)).isoformat(), "wind", "Emmen", "L2", 700, "WARNING"),
    ])
    with sessions.begin() as session:
        rule_store.create_rule(session, user_id="u1", network_id=NETWORK, risk_types=["wind"], threshold="ALERT",
                               recipients="ops@ckw.ch")
        rule_store.create_rule(session, user_id="u2", network_id=NETWORK, risk_types=["heat"], threshold="WARNING")
        rule_store.create_rule(session, user_id="u3", network_id=NETWORK, risk_types=["heat"], threshold="ALERT",
                               recipients="heat@ckw.ch")  # no heat km at ALERT: not triggered
    return AlertGrid(published, state_db_url, today)


@dg.asset(key=PUBLICATION, partitions_def=risk_partitions)
def risk_publication_standin() -> None:
    """Stands for risk_tables' publication output: the sensor only looks at its materialisations."""


def publish_run(instance: dg.DagsterInstance, network_id: str, day: date) -> dg.ExecuteInProcessResult:
    """A successful run that materialised the risk publication of (network, day)."""
    if not instance.has_dynamic_partition(networks.name, network_id):
        instance.add_dynamic_partitions(networks.name, [network_id])
    return dg.materialize([risk_publication_standin], instance=instance,
                          partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "network": network_id}))
