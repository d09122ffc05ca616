-- Season leaderboard per community with each participant's level (§7: level = points // 100 + 1,
-- next level at level × 100) and settled commitments of the season.
with board as (
    select * from {{ ref('stg_flexibility_leaderboard') }}
),

settled as (
    select b.leaderboard_id, count(s.commitment_id) as settled_commitments
    from board as b
    left join {{ ref('stg_flexibility_settlements') }} as s
        on s.user_id = b.user_id and s.community_id = b.community_id
        and s.local_date between b.season_start and b.season_end
    group by b.leaderboard_id
)

select
    b.leaderboard_id,
    b.community_id,
    b.season_start,
    b.season_end,
    b.season_rank,
    b.user_id,
    round(b.season_points, 2) as season_points,
    round(b.season_base_points, 2) as season_base_points,
    round(b.season_bonus_points, 2) as season_bonus_points,
    greatest(1, cast(floor(b.season_points / 100) as integer) + 1) as level,
    greatest(1, cast(floor(b.season_points / 100) as integer) + 1) * 100 as next_level_at,
    s.settled_commitments,
    b.total_members
from board as b
join settled as s using (leaderboard_id)
