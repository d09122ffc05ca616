-- Risk km rows of all three grains; `level` says which key columns are set.
with source as (
    select * from {{ source('risk', 'risk_km') }}
)

select
    {{ surrogate_key(['network_id', 'level', 'date', 'risk_vector', 'operational_unit', 'line_name',
                      'municipality', 'conductor_type']) }} as risk_km_id,
    network_id,
    level,
    cast(date as date) as date,
    risk_vector,
    operational_unit,
    line_name,
    municipality,
    conductor_type,
    parent_substation_name,
    operational_units,
    km_total,
    km_alert,
    km_warning,
    km_normal,
    km_escalated,
    metric_max,
    worst_level,
    risk_index,
    n_fragments,
    n_tratte,
    n_lines,
    n_units
from source
