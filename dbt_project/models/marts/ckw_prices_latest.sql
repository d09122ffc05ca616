-- Health view "latest price per tariff type": per tariff name and component, the price in force at
-- as_of and the last published slot (how far ahead prices reach).
with prices as (
    select * from {{ ref('stg_ckw_prices') }}
),

current_slot as (
    select tariff_name, tariff_type, slot_start, value
    from prices
    where slot_start <= {{ as_of_ts() }} and slot_end > {{ as_of_ts() }}
),

last_published as (
    select tariff_name, tariff_type, unit, slot_start, slot_end, value, publication_ts
    from prices
    qualify row_number() over (partition by tariff_name, tariff_type order by slot_start desc) = 1
)

select
    {{ surrogate_key(['last_published.tariff_name', 'last_published.tariff_type']) }} as tariff_component_id,
    last_published.tariff_name,
    last_published.tariff_type,
    last_published.unit,
    current_slot.slot_start as current_slot_start,
    current_slot.value as current_value_chf_kwh,
    last_published.slot_start as latest_slot_start,
    last_published.slot_end as latest_slot_end,
    {{ to_local('last_published.slot_end') }} as latest_slot_end_local,
    last_published.value as latest_value_chf_kwh,
    last_published.publication_ts as latest_publication_ts
from last_published
left join current_slot
    on current_slot.tariff_name = last_published.tariff_name
    and current_slot.tariff_type = last_published.tariff_type
