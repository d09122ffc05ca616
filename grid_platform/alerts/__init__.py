"""Alert dispatch (alerts-and-access.md §3–§5), pure domain logic without Dagster.

- ``report``: risk_km rows + rules -> recipient groups and ``grid_risk_report`` facts;
- ``events``: pipeline-run events (parse, filters, horizon, networks, processed-events record);
- ``dispatch``: per network / per event dispatch through the delivery ledger;
- ``delivery``: exactly-once sends (ledger ``store.dispatch`` around the senders), generic;
- ``nudging``: nudging-tool client and signed webhooks, generic;
- ``mqtt``: persistent-session consumer of run events and a QoS 1 publisher;
- ``config``: the environment variables of all of the above.
"""
