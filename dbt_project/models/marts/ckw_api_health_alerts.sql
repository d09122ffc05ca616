-- Alert rows of the connectivity monitor: every hour of the window whose API health score is
-- below the red threshold (the `ckw_api_health_score` check fails on the 24 h score likewise).
select
    hour_start as alert_hour_start,
    hour_start_local as alert_hour_start_local,
    'api_health_score_below_threshold' as alert_type,
    health_score_pct,
    {{ var('bands')['health_score_pct']['thresholds'][0] }} as threshold_pct,
    attempts,
    failed_attempts,
    'API health score ' || health_score_pct || ' % in the hour from ' || strftime(hour_start_local, '%Y-%m-%d %H:%M')
        || ' (' || failed_attempts || ' of ' || attempts || ' attempts failed)' as message
from {{ ref('ckw_api_health_score_hourly') }}
where health_band = 'red'
order by alert_hour_start desc
