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
    km_total,
    km_alert,
    km_warning,
    km_normal,
    km_escalated,
    risk_index,
    worst_level,
    metric_max,
    n_tratte,
    abs(km_alert + km_warning + km_normal - km_total) < 1e-6 as km_parts_sum_to_total
from {{ ref('stg_risk_km') }}
where level = 'line'
