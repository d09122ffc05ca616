with source as (
    select * from {{ source('raw', 'ckw_plant_status') }}
)

select
    {{ surrogate_key(['plant_id', 'reading_ts']) }} as reading_id,
    plant_id,
    reading_ts,
    {{ to_local('reading_ts') }} as reading_local,
    operational_status,
    -- 'in Betrieb' is the only status the API spec confirms; anything else is kept verbatim above.
    coalesce(operational_status = 'in Betrieb', false) as is_running,
    cast(voltage_kv as double) as voltage_kv,
    cast(active_power_mw as double) as active_power_mw,
    cast(reactive_power_mvar as double) as reactive_power_mvar,
    cast(wind_speed_kmh as double) as wind_speed_kmh,
    raw_payload,
    ingested_at
from source
