-- API health score panel: the score (docs block `ckw_api_health_score`) per UTC hour of the window.
-- The gauge's window value is sum(successful_attempts) / sum(attempts) x 100 over these rows.
with attempts as (
    select * from {{ ref('stg_ckw_api_health_log') }}
    where {{ in_health_window('checked_at') }}
),

hours as (
    select
        -- Hours are cut on the UTC clock; Europe/Zurich offsets are whole hours, so they match local hours.
        timezone('UTC', date_trunc('hour', timezone('UTC', checked_at))) as hour_start,
        count(*) filter (where is_sent) as attempts,
        count(*) filter (where is_sent and success) as successful_attempts,
        count(*) filter (where not is_sent) as deferred_calls
    from attempts
    group by 1
)

select
    hour_start,
    hour_start + interval 1 hour as hour_end,
    {{ to_local('hour_start') }} as hour_start_local,
    cast(attempts as integer) as attempts,
    cast(successful_attempts as integer) as successful_attempts,
    cast(attempts - successful_attempts as integer) as failed_attempts,
    cast(deferred_calls as integer) as deferred_calls,
    {{ health_score_pct('successful_attempts', 'attempts') }} as health_score_pct,
    {{ threshold_band(health_score_pct('successful_attempts', 'attempts'), 'health_score_pct') }} as health_band
from hours
