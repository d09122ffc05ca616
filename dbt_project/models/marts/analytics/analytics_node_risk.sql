-- Nodes of every network ranked by composite cascade risk (grid-analytics.md §3.1), for BI:
-- "which assets would take the most of the grid down with them".
select
    network_id,
    node_id,
    node_name,
    node_type,
    rank() over (partition by network_id order by cascade_risk_score desc, node_id) as risk_rank,
    cascade_risk_score,
    cascade_risk_score_normalized,
    betweenness_centrality,
    pagerank,
    degree_centrality,
    eigenvector_centrality,
    criticality_score,
    betweenness_band,
    total_reach,
    lat,
    lon,
    graph_version,
    computed_at
from {{ ref('stg_analytics_centrality') }}
where in_largest_component
