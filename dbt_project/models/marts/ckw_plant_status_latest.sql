-- Plant status panel (stat + gauges): the latest reading per plant at as_of, with the gauge bands.
with readings as (
    select * from {{ ref('stg_ckw_plant_status') }}
    where reading_ts <= {{ as_of_ts() }}
),

latest as (
    select *
    from readings
    qualify row_number() over (partition by plant_id order by reading_ts desc) = 1
)

select
    plant_id,
    reading_id,
    reading_ts,
    reading_local,
    (epoch({{ as_of_ts() }}) - epoch(reading_ts)) / 60.0 as reading_age_minutes,
    operational_status,
    is_running,
    active_power_mw,
    {{ threshold_band('active_power_mw', 'active_power_mw') }} as active_power_band,
    voltage_kv,
    {{ threshold_band('voltage_kv', 'voltage_kv') }} as voltage_band,
    wind_speed_kmh,
    {{ threshold_band('wind_speed_kmh', 'wind_speed_kmh') }} as wind_band,
    reactive_power_mvar
from latest
