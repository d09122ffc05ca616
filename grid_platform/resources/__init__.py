"""Dagster resources, configured from environment variables through grid_platform.settings."""
