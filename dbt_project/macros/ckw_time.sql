{#- Time helpers shared by all CKW models. Raw timestamps are TIMESTAMPTZ (UTC); the data's
    local zone is var('local_timezone'). -#}

{% macro as_of_ts() -%}
    {#- The reference instant of every window: var('as_of') when set (tests pin it), else now. -#}
    {%- if var('as_of') -%}
        cast('{{ var("as_of") }}' as timestamptz)
    {%- else -%}
        current_timestamp
    {%- endif -%}
{%- endmacro %}

{% macro to_local(ts) -%}
    {#- TIMESTAMPTZ -> naive wall-clock TIMESTAMP in the data's local zone. -#}
    timezone('{{ var("local_timezone") }}', {{ ts }})
{%- endmacro %}

{% macro local_midnight(local_date) -%}
    {#- Start of a local calendar day as an instant (TIMESTAMPTZ). -#}
    timezone('{{ var("local_timezone") }}', cast({{ local_date }} as timestamp))
{%- endmacro %}

{% macro expected_slot_count(local_date) -%}
    {#- Quarter-hour slots in a local day, from the day's real (UTC) length:
        96 normally, 92 on the spring DST day (23 h), 100 on the autumn one (25 h). -#}
    cast(
        (epoch({{ local_midnight('cast(' ~ local_date ~ ' as date) + 1') }})
         - epoch({{ local_midnight(local_date) }}))
        / ({{ var('slot_minutes') }} * 60)
        as integer
    )
{%- endmacro %}

{% macro in_health_window(ts) -%}
    {#- The monitoring window (as_of - health_window_hours, as_of]: windowed, never all-time. -#}
    ({{ ts }} > {{ as_of_ts() }} - to_hours({{ var('health_window_hours') }})
     and {{ ts }} <= {{ as_of_ts() }})
{%- endmacro %}
