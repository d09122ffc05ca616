{% macro risk_km_rollup_columns(counts) -%}
    {#- Measures of a `stg_risk_km` rollup row (line / unit grain), passed through: km per level, the
        index (from the km sums), worst level and largest metric, then the grain's `counts` columns and
        the check that the km parts add up to the total (risk-model §13). -#}
    km_total,
    km_alert,
    km_warning,
    km_normal,
    km_escalated,
    risk_index,
    worst_level,
    metric_max,
    {%- for column in counts %}
    {{ column }},
    {%- endfor %}
    abs(km_alert + km_warning + km_normal - km_total) < 1e-6 as km_parts_sum_to_total
{%- endmacro %}
