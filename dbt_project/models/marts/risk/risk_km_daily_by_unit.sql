-- Risk km per day, vector and operational unit: the model's `unit` rollup (index from the km sums).
select
    risk_km_id as unit_day_id,
    network_id,
    date,
    risk_vector,
    operational_unit,
    km_total,
    km_alert,
    km_warning,
    km_normal,
    km_escalated,
    risk_index,
    worst_level,
    metric_max,
    n_lines,
    n_tratte,
    abs(km_alert + km_warning + km_normal - km_total) < 1e-6 as km_parts_sum_to_total
from {{ ref('stg_risk_km') }}
where level = 'unit'
