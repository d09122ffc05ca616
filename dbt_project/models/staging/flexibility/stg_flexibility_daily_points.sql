-- Daily points per participant, community and local day, from the scoring publication.
with source as (
    select * from {{ source('flexibility', 'daily_points') }}
)

select
    {{ surrogate_key(['community_id', 'user_id', 'day']) }} as daily_points_id,
    community_id,
    user_id,
    cast(day as date) as local_date,
    cast(base_points as double) as base_points,
    cast(bonus_points as double) as bonus_points,
    cast(daily_points as double) as daily_points
from source
