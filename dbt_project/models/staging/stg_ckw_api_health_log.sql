with source as (
    select * from {{ source('raw', 'ckw_api_health_log') }}
)

select
    {{ surrogate_key(['run_id', 'endpoint', 'call_seq', 'attempt']) }} as attempt_id,
    run_id,
    endpoint,
    cast(call_seq as integer) as call_seq,
    cast(attempt as integer) as attempt,
    request,
    checked_at,
    {{ to_local('checked_at') }} as checked_at_local,
    cast(status_code as integer) as status_code,
    cast(response_time_ms as integer) as response_time_ms,
    success,
    error_message,
    outcome,
    -- A deferred call was held back by the rate-limit budget and never sent: it is not an attempt
    -- for the health score, the latency or the alerts.
    outcome <> 'deferred' as is_sent,
    cast(ratelimit_limit as integer) as ratelimit_limit,
    cast(ratelimit_remaining as integer) as ratelimit_remaining,
    ratelimit_reset as ratelimit_reset_ms
from source
