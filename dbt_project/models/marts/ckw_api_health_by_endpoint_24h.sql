-- Health view "per-endpoint 24 h summary": attempts, successes, success rate, mean latency and the
-- last check per monitored endpoint. Every endpoint ever logged is listed, so one that stopped
-- being called shows 0 attempts in the window rather than vanishing.
with log as (
    select * from {{ ref('stg_ckw_api_health_log') }}
    where checked_at <= {{ as_of_ts() }}
),

endpoints as (
    select
        endpoint,
        max(checked_at) filter (where is_sent) as last_checked_at
    from log
    group by endpoint
),

last_attempt as (
    select endpoint, outcome as last_outcome, status_code as last_status_code
    from log
    where is_sent
    qualify row_number() over (partition by endpoint order by checked_at desc, call_seq desc, attempt desc) = 1
),

window_stats as (
    select
        endpoint,
        count(*) filter (where is_sent) as attempts,
        count(*) filter (where is_sent and success) as successes,
        count(*) filter (where not is_sent) as deferred_calls,
        avg(response_time_ms) filter (where is_sent) as avg_response_time_ms
    from log
    where {{ in_health_window('checked_at') }}
    group by endpoint
)

select
    endpoints.endpoint,
    cast(coalesce(window_stats.attempts, 0) as integer) as attempts,
    cast(coalesce(window_stats.successes, 0) as integer) as successes,
    cast(coalesce(window_stats.deferred_calls, 0) as integer) as deferred_calls,
    {{ health_score_pct('window_stats.successes', 'window_stats.attempts') }} as success_rate_pct,
    window_stats.avg_response_time_ms,
    endpoints.last_checked_at,
    last_attempt.last_outcome,
    last_attempt.last_status_code
from endpoints
left join window_stats on window_stats.endpoint = endpoints.endpoint
left join last_attempt on last_attempt.endpoint = endpoints.endpoint
