-- Active power panel: the plant's active power per reading (full history; the panel picks its range).
select
    reading_id,
    plant_id,
    reading_ts,
    reading_local,
    active_power_mw,
    {{ threshold_band('active_power_mw', 'active_power_mw') }} as active_power_band
from {{ ref('stg_ckw_plant_status') }}
