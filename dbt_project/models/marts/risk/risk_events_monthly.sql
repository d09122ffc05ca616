-- Heat and wind event counts per calendar month (network-local dates).
with days as (
    select *, cast(date_trunc('month', date) as date) as month_start
    from {{ ref('risk_events_daily') }}
)

select
    {{ surrogate_key(['network_id', 'month_start', 'risk_vector']) }} as event_month_id,
    network_id,
    month_start,
    risk_vector,
    count(*) filter (where is_event_day) as event_days,
    count(*) filter (where alert_fragments > 0) as alert_days,
    count(*) filter (where day_risk_level = 'ALERT') as day_level_alert_days,
    count(*) filter (where day_risk_level = 'WARNING') as day_level_warning_days,
    sum(alert_fragments) as alert_fragment_days,
    sum(warning_fragments) as warning_fragment_days,
    sum(km_alert) as km_alert,
    sum(km_warning) as km_warning,
    max(metric_max) as metric_max,
    count(*) as days
from days
group by network_id, month_start, risk_vector
