"""dbt marts for BI (dbt-duckdb on the shared warehouse), loaded with dagster-dbt so the
UI shows dlt -> dbt lineage. Models rebuild when their upstream tables change."""


from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from grid_platform.settings import PROJECT_ROOT

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target="local")


class GridDbtTranslator(DagsterDbtTranslator):
    """Groups come from `meta.dagster.group` in dbt_project.yml; every model follows its upstreams."""

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        return ["team:grid-data"]

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        # Plain eager() waits while any upstream partition is missing, which never ends below
        # daily-partitioned sources; the marts rebuild whenever an upstream updates.
        return dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=GridDbtTranslator(),
    pool="duckdb",
)
def grid_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """dbt build (models and their tests) of the selected models."""
    yield from dbt.cli(["build"], context=context).stream()
