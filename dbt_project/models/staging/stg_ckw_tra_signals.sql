with source as (
    select * from {{ source('raw', 'ckw_tra_signals') }}
)

select
    {{ surrogate_key(['signal_name', 'signal_date', 'start_ts']) }} as signal_id,
    signal_name,
    description,
    signal_date,
    start_ts,
    end_ts,
    {{ to_local('start_ts') }} as start_local,
    {{ to_local('end_ts') }} as end_local,
    -- Second precision (unlike prices), so the difference of epochs, not a count of minute boundaries.
    (epoch(end_ts) - epoch(start_ts)) / 60.0 as duration_minutes,
    ingested_at
from source
