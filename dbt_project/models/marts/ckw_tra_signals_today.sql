-- TRA today panel. Signals of a date are published from D+1, so "today" usually has none yet:
-- show the latest date with signals up to today, and say which date that is.
with signals as (
    select * from {{ ref('stg_ckw_tra_signals') }}
),

today as (
    select cast({{ to_local(as_of_ts()) }} as date) as today_local
),

shown as (
    select today.today_local, max(signals.signal_date) as shown_date
    from today
    join signals on signals.signal_date <= today.today_local
    group by today.today_local
)

select
    signals.signal_id,
    shown.shown_date,
    shown.today_local,
    shown.shown_date < shown.today_local as is_fallback,
    signals.signal_name,
    signals.description,
    signals.start_ts,
    signals.end_ts,
    signals.start_local,
    signals.end_local,
    signals.duration_minutes
from signals
join shown on signals.signal_date = shown.shown_date
