-- Fragment-days of the risk model with the vector's metric and escalation in one column each.
with source as (
    select * from {{ source('risk', 'fragment_risk_daily') }}
)

select
    {{ surrogate_key(['network_id', 'fragment_id', 'date', 'risk_vector']) }} as fragment_day_id,
    network_id,
    fragment_id,
    segment_id,
    line_name,
    conductor_type,
    municipality,
    operational_unit,
    parent_substation_name,
    cast(date as date) as date,
    risk_vector,
    risk_level,
    risk_level is not null as is_assessed,
    length_m / 1000.0 as length_km,
    case risk_vector when 'wind' then gust_excess else temp_max_c end as metric_value,
    coalesce(case risk_vector when 'wind' then escalated_by_tree_strike else escalated_by_thermal end, false)
        as is_escalated,
    forecast_model
from source
