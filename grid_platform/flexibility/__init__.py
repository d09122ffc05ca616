"""Flexibility domain (flexibility.md): windows, suggestions, commitments, settlement, nudges, gamification.

Pure domain logic without Dagster:

- ``participants``: the demo energy-community registry and its consumption (SimBench profiles);
- ``meters``: HTTP client of the meter-data service (stand-in ``standins.meters``);
- ``windows`` / ``periods``: flexibility windows (surplus, forecast, price) and period keys;
- ``suggestions``: the suggestion list of ``GET /api/suggestions``;
- ``settlement``: vectorised, exactly-once settlement (ledger in ``store.flexibility``);
- ``nudges`` / ``notify``: nudge events and their delivery through the delivery ledger, MQTT;
- ``gamification``: scoring, leaderboard, levels and badges;
- ``access``: the Rego policy of the flexibility API;
- ``publications``: the published windows and scores the API reads;
- ``pipeline``: the job functions the Dagster assets and sensors call;
- ``config``: the environment variables of all of the above.
"""
