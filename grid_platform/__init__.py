"""grid_platform: a Dagster data platform for distribution grid operators."""
