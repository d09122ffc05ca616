-- Grid risk report deliveries per network, run date and channel: how many recipient groups, in
-- which state, how many rounds it took and how long until the first one arrived.
with reports as (
    select * from {{ ref('stg_alert_dispatches') }}
    where event_type = 'grid_risk_report' and period_date is not null
)

select
    {{ surrogate_key(['network_id', 'period_date', 'channel']) }} as network_day_id,
    network_id,
    period_date,
    channel,
    count(*) as recipient_groups,
    count(*) filter (where status = 'sent') as sent,
    count(*) filter (where status = 'duplicate') as duplicates,
    count(*) filter (where status in ('pending', 'failed')) as in_progress,
    count(*) filter (where status = 'dead_letter') as dead_letters,
    count(*) filter (where threshold = 'WARNING') as warning_groups,
    sum(attempts) as attempts,
    count(*) filter (where attempts > 1) as retried,
    min(sent_at) as first_sent_at,
    max(sent_at) as last_sent_at,
    round(date_diff('second', min(created_at), min(sent_at)) / 60.0, 1) as minutes_to_first_sent,
    bool_and(is_done) as all_delivered
from reports
group by network_id, period_date, channel
