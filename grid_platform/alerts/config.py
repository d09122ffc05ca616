"""Alert-dispatch configuration from environment variables (alerts-and-access.md §4–§5).

Kept next to the domain (not in ``grid_platform.settings``) because only alerts and the
deliveries that reuse them read these; ``load_settings()`` still provides the shared URLs
(``NUDGING_API_URL``, ``MQTT_URL``, ``STATE_DB_URL``, ``GRID_DATA_DIR``).

| variable | default | meaning |
|---|---|---|
| ``GRID_ALERTS_ENABLED`` | ``false`` | kill switch of alert dispatch |
| ``GRID_PIPELINE_FLOW`` | ``grid-resilience-flow`` | run events of this flow trigger dispatch |
| ``GRID_PIPELINE_NAMESPACE`` | ``grid`` | namespace meaning "every network with a rule" |
| ``GRID_ALERT_HORIZON_DAYS`` | ``3`` | run date and the following N-1 days |
| ``GRID_APP_URL`` | ``http://127.0.0.1:8015`` | ``app_url`` fact (links ``{app_url}/table?date=``) |
| ``GRID_DISPATCH_MAX_ATTEMPTS`` | ``3`` | delivery rounds before a delivery is parked as dead letter |
| ``GRID_DISPATCH_LEASE_S`` | ``120`` | how long a claimed delivery is reserved for its claimer |
| ``GRID_WEBHOOK_SECRET`` | unset (webhooks off) | HMAC-SHA256 key signing webhook bodies |
| ``GRID_MQTT_CLIENT_ID`` | ``grid-platform-alerts`` | fixed client id of the persistent MQTT session |
| ``GRID_MQTT_SESSION_EXPIRY_S`` | ``604800`` | how long the broker keeps the session (and queued events) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name)
    if value is None:
        return default
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"${name} must be a boolean (true/false), got {value!r}")


def env_number(environ: Mapping[str, str], name: str, default: float, *, minimum: float, integer: bool = False
               ) -> float:
    raw = env_str(environ, name, "")
    if raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ValueError(f"${name} must be {'an integer' if integer else 'a number'}, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"${name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class AlertConfig:
    enabled: bool = False
    pipeline_flow: str = "grid-resilience-flow"
    pipeline_namespace: str = "grid"
    horizon_days: int = 3
    app_url: str = "http://127.0.0.1:8015"
    max_attempts: int = 3
    lease_s: float = 120.0
    webhook_secret: str | None = None
    mqtt_client_id: str = "grid-platform-alerts"
    mqtt_session_expiry_s: int = 7 * 24 * 3600


def load_alert_config(environ: Mapping[str, str] | None = None) -> AlertConfig:
    env = os.environ if environ is None else environ
    return AlertConfig(
        enabled=env_bool(env, "GRID_ALERTS_ENABLED", False),
        pipeline_flow=env_str(env, "GRID_PIPELINE_FLOW", "grid-resilience-flow"),
        pipeline_namespace=env_str(env, "GRID_PIPELINE_NAMESPACE", "grid"),
        horizon_days=int(env_number(env, "GRID_ALERT_HORIZON_DAYS", 3, minimum=0, integer=True)),
        app_url=env_str(env, "GRID_APP_URL", "http://127.0.0.1:8015").rstrip("/"),
        max_attempts=int(env_number(env, "GRID_DISPATCH_MAX_ATTEMPTS", 3, minimum=1, integer=True)),
        lease_s=env_number(env, "GRID_DISPATCH_LEASE_S", 120.0, minimum=0.0),
        webhook_secret=env_str(env, "GRID_WEBHOOK_SECRET", "") or None,
        mqtt_client_id=env_str(env, "GRID_MQTT_CLIENT_ID", "grid-platform-alerts"),
        mqtt_session_expiry_s=int(env_number(env, "GRID_MQTT_SESSION_EXPIRY_S", 7 * 24 * 3600, minimum=1,
                                             integer=True)),
    )
