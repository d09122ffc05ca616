-- Settled commitments with the local day of their window (the day the participant shifted on).
with source as (
    select * from {{ source('flexibility', 'settlement_ledger') }}
)

select
    commitment_id,
    user_id,
    community_id,
    device_id,
    cast(period_start as timestamptz) as period_start,
    cast(period_end as timestamptz) as period_end,
    cast({{ to_local('cast(period_start as timestamptz)') }} as date) as local_date,
    cast(period_date as date) as settled_utc_date,
    cast(settled_at as timestamptz) as settled_at,
    cast(reward_points_actual as integer) as reward_points_actual,
    cast(actual_kwh as double) as actual_kwh,
    source as settled_by
from source
