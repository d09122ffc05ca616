-- Per local day and community: settled commitments, metered kWh and settled points (ledger), and the
-- displayed scoring points (base, bonus, total) with the number of members who scored.
with settled as (
    select
        community_id,
        local_date,
        count(*) as settled_commitments,
        count(distinct user_id) as settling_participants,
        sum(actual_kwh) as settled_kwh,
        sum(reward_points_actual) as settled_points
    from {{ ref('stg_flexibility_settlements') }}
    where community_id is not null
    group by community_id, local_date
),

scored as (
    select
        community_id,
        local_date,
        count(*) filter (where daily_points > 0) as scoring_participants,
        sum(base_points) as base_points,
        sum(bonus_points) as bonus_points,
        sum(daily_points) as daily_points
    from {{ ref('stg_flexibility_daily_points') }}
    group by community_id, local_date
)

select
    {{ surrogate_key(['coalesce(s.community_id, p.community_id)', 'coalesce(s.local_date, p.local_date)']) }}
        as community_day_id,
    coalesce(s.community_id, p.community_id) as community_id,
    coalesce(s.local_date, p.local_date) as local_date,
    coalesce(s.settled_commitments, 0) as settled_commitments,
    coalesce(s.settling_participants, 0) as settling_participants,
    round(coalesce(s.settled_kwh, 0), 3) as settled_kwh,
    coalesce(s.settled_points, 0) as settled_points,
    coalesce(p.scoring_participants, 0) as scoring_participants,
    round(coalesce(p.base_points, 0), 2) as base_points,
    round(coalesce(p.bonus_points, 0), 2) as bonus_points,
    round(coalesce(p.daily_points, 0), 2) as daily_points
from settled as s
full outer join scored as p
    on s.community_id = p.community_id and s.local_date = p.local_date
