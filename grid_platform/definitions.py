"""The one Definitions object of grid_platform: assets, checks, jobs, schedules, sensors, resources."""


import os
import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from dagster_dlt import DagsterDltResource

from grid_platform.assets.alerts import AlertsResource, alert_assets, alert_checks
from grid_platform.assets.analytics import analytics_assets, analytics_job
from grid_platform.assets.ckw import ckw_assets, ckw_checks
from grid_platform.assets.dbt import dbt_project, grid_dbt_models
from grid_platform.assets.flexibility import flexibility_assets
from grid_platform.assets.risk import risk_assets, risk_checks
from grid_platform.assets.topology import grid_topology
from grid_platform.executors import grid_executor
from grid_platform.resources.ckw import CkwApiResource
from grid_platform.resources.flexibility import FlexibilityResource
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.sensors.alerts import alert_jobs, alert_schedules, alert_sensors
from grid_platform.sensors.ckw import ckw_jobs, ckw_schedules
from grid_platform.sensors.flexibility import flexibility_jobs, flexibility_schedules, flexibility_sensors
from grid_platform.sensors.risk import risk_jobs, risk_schedules, risk_sensors
from grid_platform.sensors.topology import grid_network_registry, topology_job
from grid_platform.settings import load_settings

settings = load_settings()
# dbt runs in its project folder and reads the warehouse path from the environment: hand it
# the absolute path every other writer uses.
os.environ.setdefault("GRID_WAREHOUSE", str(settings.warehouse_path))

# dagster-dbt needs the dbt of this environment even when the venv is not activated.
DBT_EXECUTABLE = shutil.which("dbt") or str(Path(sys.executable).with_name("dbt"))

automation = dg.AutomationConditionSensorDefinition(
    "grid_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materialises assets whose automation condition (e.g. eager after upstream updates) holds.",
)

ckw_marts_job = dg.define_asset_job(
    "ckw_marts_job", selection=dg.AssetSelection.groups("ckw_bi"),
    description="dbt build of the CKW connectivity marts (models and their tests).",
)

defs = dg.Definitions(
    # Steps of these runs are light and share one DuckDB writer: running them in the run's own
    # process saves a Python start-up per step; heavy partitions parallelise across runs instead.
    # GRID_EXECUTOR=celery sends steps to celery workers (docs/operations.md); in-process by default.
    executor=grid_executor(),
    assets=[*ckw_assets, grid_dbt_models, grid_topology, *risk_assets, *alert_assets,
            *flexibility_assets, *analytics_assets],
    asset_checks=[*ckw_checks, *risk_checks, *alert_checks],
    jobs=[*ckw_jobs, ckw_marts_job, topology_job, *risk_jobs, *alert_jobs, *flexibility_jobs, analytics_job],
    schedules=[*ckw_schedules, *risk_schedules, *alert_schedules, *flexibility_schedules],
    sensors=[automation, grid_network_registry, *risk_sensors, *alert_sensors, *flexibility_sensors],
    resources={
        "warehouse": WarehouseResource(path=str(settings.warehouse_path),
                                       pipelines_dir=str(settings.dlt_pipelines_dir)),
        "ckw": CkwApiResource(base_url=settings.ckw_api_url, spool_dir=str(settings.ckw_spool_dir)),
        "dlt": DagsterDltResource(),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE),
        "alerts": AlertsResource(state_db_url=settings.state_db_url, nudging_api_url=settings.nudging_api_url,
                                 published_dir=str(settings.published_dir), mqtt_url=settings.mqtt_url),
        "flexibility": FlexibilityResource.from_settings(settings),
    },
)
