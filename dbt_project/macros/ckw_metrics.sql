{% macro surrogate_key(columns) -%}
    {#- md5 over '|'-joined text of the key columns (dbt_utils is unavailable offline).
        TIMESTAMPTZ text depends on the session zone, which the profile pins to UTC. -#}
    md5(concat_ws('|'
    {%- for column in columns -%}
        , coalesce(cast({{ column }} as varchar), '')
    {%- endfor -%}
    ))
{%- endmacro %}

{% macro threshold_band(expr, band) -%}
    {#- Dashboard band of a value from var('bands')[band]: below thresholds[i] -> labels[i],
        at or above the last threshold -> the last label; null stays null. -#}
    {%- set spec = var('bands')[band] -%}
    {%- if spec.labels | length != spec.thresholds | length + 1 -%}
        {{ exceptions.raise_compiler_error("band '" ~ band ~ "' needs one label more than thresholds") }}
    {%- endif -%}
    case
        when {{ expr }} is null then null
        {%- for threshold in spec.thresholds %}
        when {{ expr }} < {{ threshold }} then '{{ spec.labels[loop.index0] }}'
        {%- endfor %}
        else '{{ spec.labels[-1] }}'
    end
{%- endmacro %}

{% macro health_score_pct(successes, attempts) -%}
    {#- See the docs block `ckw_api_health_score`: successes / scored attempts x 100, null without attempts.
        Not rounded, so the band edges (90 / 99) are judged on the exact ratio. -#}
    case when {{ attempts }} > 0 then 100.0 * {{ successes }} / {{ attempts }} end
{%- endmacro %}
