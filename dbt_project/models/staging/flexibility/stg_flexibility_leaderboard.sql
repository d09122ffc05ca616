-- Season leaderboard rows per community, from the scoring publication.
with source as (
    select * from {{ source('flexibility', 'leaderboard') }}
)

select
    {{ surrogate_key(['community_id', 'user_id', 'season_start']) }} as leaderboard_id,
    community_id,
    user_id,
    cast(season_points as double) as season_points,
    cast(season_base_points as double) as season_base_points,
    cast(season_bonus_points as double) as season_bonus_points,
    cast(season_rank as integer) as season_rank,
    cast(total_members as integer) as total_members,
    cast(season_start as date) as season_start,
    cast(season_end as date) as season_end
from source
