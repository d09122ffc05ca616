-- Risk km per day, vector and municipality, rolled up from the tratta rows like the model's own
-- rollups: km summed, the index recomputed from the sums (never an average of indices).
-- risk_warning_weight mirrors risk_km.warning_weight of grid_platform/risk/thresholds.yaml.
with tratte as (
    select * from {{ ref('stg_risk_km') }}
    where level = 'tratta'
)

select
    {{ surrogate_key(['network_id', 'date', 'risk_vector', 'municipality']) }} as municipality_day_id,
    network_id,
    date,
    risk_vector,
    municipality,
    sum(km_total) as km_total,
    sum(km_alert) as km_alert,
    sum(km_warning) as km_warning,
    sum(km_normal) as km_normal,
    sum(km_escalated) as km_escalated,
    round(100 * (sum(km_alert) + {{ var('risk_warning_weight', 0.5) }} * sum(km_warning))
          / nullif(sum(km_total), 0), 2) as risk_index,
    case
        when bool_or(worst_level = 'ALERT') then 'ALERT'
        when bool_or(worst_level = 'WARNING') then 'WARNING'
        else 'NORMAL'
    end as worst_level,
    max(metric_max) as metric_max,
    count(distinct line_name) as n_lines,
    count(*) as n_tratte,
    abs(sum(km_alert) + sum(km_warning) + sum(km_normal) - sum(km_total)) < 1e-6 as km_parts_sum_to_total
from tratte
group by network_id, date, risk_vector, municipality
