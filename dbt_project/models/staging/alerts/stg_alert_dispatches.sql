-- Deliveries of the ledger copy, typed; `period_date` is set for daily periods (grid risk reports).
with source as (
    select * from {{ source('alerts', 'dispatches') }}
)

select
    {{ surrogate_key(['key']) }} as dispatch_id,
    key as dispatch_key,
    event_type,
    channel,
    network_id,
    recipient_key,
    period,
    try_cast(period as date) as period_date,
    status,
    status in ('sent', 'duplicate') as is_done,
    status = 'dead_letter' as is_dead_letter,
    cast(attempts as integer) as attempts,
    cast(status_code as integer) as status_code,
    last_error,
    threshold,
    risk_types,
    cast(sent_at as timestamptz) as sent_at,
    cast(created_at as timestamptz) as created_at,
    cast(updated_at as timestamptz) as updated_at,
    cast(exported_at as timestamptz) as exported_at
from source
