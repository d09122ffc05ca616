-- "Which lines had the most alert km last month?": the lines with alert km in the calendar month
-- before the local (Europe/Zurich) month of as_of, ranked per network.
select
    network_id,
    month_start,
    rank_in_month as rank,
    line_name,
    line_km,
    km_alert,
    km_alert_wind,
    km_alert_heat,
    km_warning,
    alert_days
from {{ ref('risk_line_km_monthly') }}
where month_start = cast(date_trunc('month', {{ to_local(as_of_ts()) }}) - interval 1 month as date)
  and km_alert > 0
