"""Platform configuration from environment variables, with safe local defaults.

Imports no Dagster so that domain code, the read API, the stand-ins and the CLI share it.
Every path is resolved to an absolute path once, because dlt, dbt (which runs with its
project folder as working directory) and the resources must all open the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Local stand-in ports: 8101 and up, one per upstream service (architecture.md).
STANDIN_PORTS = {"ckw": 8101, "dt": 8102, "weather": 8103, "nudging": 8104, "meters": 8105}


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _abs(path: str) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else (PROJECT_ROOT / p)).resolve()


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    dagster_home: Path
    ckw_api_url: str
    dt_api_url: str
    weather_api_url: str
    nudging_api_url: str
    mqtt_url: str | None
    state_db_url: str
    local_timezone: str
    # Meter-data service of the flexibility domain (smart-meter consumption of community members).
    meter_api_url: str = f"http://127.0.0.1:{STANDIN_PORTS['meters']}"
    # Per-partition risk Parquet (local directory or fsspec URL such as s3://bucket/risk) that
    # parallel workers write and DuckDB/dbt read; default $GRID_DATA_DIR/risk_parts.
    risk_parts_url: str = ""

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def published_dir(self) -> Path:
        return self.data_dir / "published"

    @property
    def dlt_pipelines_dir(self) -> Path:
        return self.data_dir / "dlt"

    @property
    def ckw_spool_dir(self) -> Path:
        """Per-run JSON-lines of CKW call attempts and rejected records, waiting to be loaded."""
        return self.data_dir / "spool" / "ckw"

    @property
    def downloads_dir(self) -> Path:
        return self.data_dir / "downloads"


def load_settings() -> Settings:
    data_dir = _abs(_env("GRID_DATA_DIR", "./data"))
    standin = lambda name: f"http://127.0.0.1:{STANDIN_PORTS[name]}"
    return Settings(
        data_dir=data_dir,
        dagster_home=_abs(_env("DAGSTER_HOME", "./.dagster_home")),
        ckw_api_url=_env("CKW_API_URL", standin("ckw") + "/api").rstrip("/"),
        dt_api_url=_env("DT_API_URL", standin("dt")).rstrip("/"),
        weather_api_url=_env("WEATHER_API_URL", standin("weather")).rstrip("/"),
        nudging_api_url=_env("NUDGING_API_URL", standin("nudging")).rstrip("/"),
        mqtt_url=os.environ.get("MQTT_URL") or None,
        state_db_url=_env("STATE_DB_URL", f"sqlite:///{data_dir / 'state.db'}"),
        local_timezone=_env("GRID_LOCAL_TZ", "Europe/Zurich"),
        meter_api_url=_env("METER_API_URL", standin("meters")).rstrip("/"),
        risk_parts_url=_env("GRID_RISK_PARTS_URL", str(data_dir / "risk_parts")).rstrip("/"),
    )
