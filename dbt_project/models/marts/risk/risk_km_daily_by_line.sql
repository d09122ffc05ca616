-- Risk km per day, vector and line: the model's `line` rollup (index from the km sums).
select
    risk_km_id as line_day_id,
    network_id,
    date,
    risk_vector,
    line_name,
    operational_units,
    n_units,
    parent_substation_name,
    {{ risk_km_rollup_columns(['n_tratte']) }}
from {{ ref('stg_risk_km') }}
where level = 'line'
