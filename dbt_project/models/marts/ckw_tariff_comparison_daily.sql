-- Tariff comparison panel: per local day, tariff name and component, the day's range and mean,
-- with slot completeness against the day's real length (92 / 96 / 100 quarter-hours).
with prices as (
    select * from {{ ref('stg_ckw_prices') }}
),

days as (
    select
        local_date,
        tariff_name,
        tariff_type,
        min(value) as min_chf_kwh,
        avg(value) as avg_chf_kwh,
        max(value) as max_chf_kwh,
        count(*) as slot_count
    from prices
    group by local_date, tariff_name, tariff_type
)

select
    {{ surrogate_key(['local_date', 'tariff_name', 'tariff_type']) }} as tariff_day_id,
    local_date,
    tariff_name,
    tariff_type,
    min_chf_kwh,
    avg_chf_kwh,
    max_chf_kwh,
    cast(slot_count as integer) as slot_count,
    {{ expected_slot_count('local_date') }} as expected_slot_count,
    slot_count = {{ expected_slot_count('local_date') }} as is_complete
from days
