-- Latency by endpoint panel: mean response time per endpoint over the window, banded.
select
    endpoint,
    attempts,
    avg_response_time_ms,
    {{ threshold_band('avg_response_time_ms', 'response_time_ms') }} as latency_band
from {{ ref('ckw_api_health_by_endpoint_24h') }}
