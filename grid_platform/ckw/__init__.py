"""CKW public API: client, payload normalisation and time windows (no Dagster import)."""
