-- Wind and heat events per day: fragment-days and km at each level, with the network's day level.
with fragments as (
    select
        network_id,
        date,
        risk_vector,
        count(*) filter (where risk_level = 'ALERT') as alert_fragments,
        count(*) filter (where risk_level = 'WARNING') as warning_fragments,
        count(*) filter (where not is_assessed) as not_assessed_fragments,
        count(*) filter (where is_escalated) as escalated_fragments,
        coalesce(sum(length_km) filter (where risk_level = 'ALERT'), 0) as km_alert,
        coalesce(sum(length_km) filter (where risk_level = 'WARNING'), 0) as km_warning,
        count(distinct line_name) filter (where risk_level in ('ALERT', 'WARNING')) as lines_at_risk,
        max(metric_value) as metric_max
    from {{ ref('stg_risk_fragment_days') }}
    group by network_id, date, risk_vector
)

select
    {{ surrogate_key(['f.network_id', 'f.date', 'f.risk_vector']) }} as event_day_id,
    f.network_id,
    f.date,
    f.risk_vector,
    t.day_risk_level,
    t.alert_count as alert_segments,
    t.warning_count as warning_segments,
    t.risk_ratio,
    f.alert_fragments,
    f.warning_fragments,
    f.not_assessed_fragments,
    f.escalated_fragments,
    f.km_alert,
    f.km_warning,
    f.lines_at_risk,
    f.metric_max,
    f.alert_fragments + f.warning_fragments > 0 as is_event_day
from fragments f
left join {{ ref('stg_risk_trendline') }} t
    on t.network_id = f.network_id and t.date = f.date and t.risk_vector = f.risk_vector
