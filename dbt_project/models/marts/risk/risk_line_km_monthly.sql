-- Alert and warning km per line and calendar month (network-local dates), both vectors, ranked
-- within the network and month by alert km (then warning km, then name).
with days as (
    select * from {{ ref('risk_km_daily_by_line') }}
),

months as (
    select
        network_id,
        cast(date_trunc('month', date) as date) as month_start,
        line_name,
        sum(km_alert) as km_alert,
        sum(km_alert) filter (where risk_vector = 'wind') as km_alert_wind,
        sum(km_alert) filter (where risk_vector = 'heat') as km_alert_heat,
        sum(km_warning) as km_warning,
        count(distinct date) filter (where km_alert > 0) as alert_days,
        count(distinct date) filter (where km_warning > 0) as warning_days,
        count(distinct date) as days_assessed,
        max(km_total) as line_km
    from days
    group by network_id, cast(date_trunc('month', date) as date), line_name
)

select
    {{ surrogate_key(['network_id', 'month_start', 'line_name']) }} as line_month_id,
    network_id,
    month_start,
    line_name,
    line_km,
    km_alert,
    coalesce(km_alert_wind, 0) as km_alert_wind,
    coalesce(km_alert_heat, 0) as km_alert_heat,
    km_warning,
    alert_days,
    warning_days,
    days_assessed,
    cast(rank() over (partition by network_id, month_start
                      order by km_alert desc, km_warning desc, line_name) as integer) as rank_in_month
from months
