-- Prices (15 min) panel: the four components side by side per slot and tariff name, with the
-- panel's stat bands.
with prices as (
    select * from {{ ref('stg_ckw_prices') }}
),

slots as (
    select
        slot_start,
        tariff_name,
        max(slot_end) as slot_end,
        max(slot_start_local) as slot_start_local,
        max(local_date) as local_date,
        max(case when tariff_type = 'integrated' then value end) as integrated_chf_kwh,
        max(case when tariff_type = 'grid' then value end) as grid_chf_kwh,
        max(case when tariff_type = 'electricity' then value end) as electricity_chf_kwh,
        max(case when tariff_type = 'grid_usage' then value end) as grid_usage_chf_kwh,
        max(publication_ts) as publication_ts
    from prices
    group by slot_start, tariff_name
)

select
    {{ surrogate_key(['slot_start', 'tariff_name']) }} as slot_id,
    slot_start,
    slot_end,
    slot_start_local,
    local_date,
    tariff_name,
    integrated_chf_kwh,
    grid_chf_kwh,
    electricity_chf_kwh,
    grid_usage_chf_kwh,
    {{ threshold_band('integrated_chf_kwh', 'integrated_chf_kwh') }} as integrated_band,
    {{ threshold_band('grid_chf_kwh', 'grid_chf_kwh') }} as grid_band,
    {{ threshold_band('electricity_chf_kwh', 'electricity_chf_kwh') }} as electricity_band,
    publication_ts
from slots
