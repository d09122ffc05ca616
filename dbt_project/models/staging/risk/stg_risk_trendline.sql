with source as (
    select * from {{ source('risk', 'trendline') }}
)

select
    {{ surrogate_key(['network_id', 'date', 'risk_vector']) }} as day_level_id,
    network_id,
    cast(date as date) as date,
    risk_vector,
    alert_count,
    warning_count,
    total_segments,
    risk_ratio,
    day_risk_level
from source
