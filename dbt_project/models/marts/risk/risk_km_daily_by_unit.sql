-- Risk km per day, vector and operational unit: the model's `unit` rollup (index from the km sums).
select
    risk_km_id as unit_day_id,
    network_id,
    date,
    risk_vector,
    operational_unit,
    {{ risk_km_rollup_columns(['n_lines', 'n_tratte']) }}
from {{ ref('stg_risk_km') }}
where level = 'unit'
