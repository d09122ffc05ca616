"""Wind and heat risk model (risk-model.md): pure Python, no Dagster.

Entry points: ``pipeline.run_risk`` (one network, one run: every risk table),
``publication.publish_risk`` (the ``risk`` dataset), ``config.load_config`` (thresholds),
``levels.classify_segment_days`` (the vectorised rules).
"""
