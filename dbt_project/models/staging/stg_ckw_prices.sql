with source as (
    select * from {{ source('raw', 'ckw_prices') }}
)

select
    {{ surrogate_key(['slot_start', 'tariff_type', 'tariff_name']) }} as price_id,
    slot_start,
    slot_end,
    {{ to_local('slot_start') }} as slot_start_local,
    cast({{ to_local('slot_start') }} as date) as local_date,
    tariff_name,
    tariff_type,
    unit,
    cast(value as double) as value,
    publication_ts,
    ingested_at
from source
