-- Recent alerts panel: failed attempts in the window, newest first (alert_rank 1 = newest).
select
    row_number() over (order by checked_at desc, endpoint, run_id, call_seq desc, attempt desc) as alert_rank,
    attempt_id,
    checked_at,
    checked_at_local,
    endpoint,
    request,
    run_id,
    attempt,
    status_code,
    outcome,
    error_message,
    response_time_ms
from {{ ref('stg_ckw_api_health_log') }}
where {{ in_health_window('checked_at') }}
  and is_sent
  and not success
order by alert_rank
