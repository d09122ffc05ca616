with source as (
    select * from {{ source('analytics', 'grid_centrality') }}
)

select
    {{ surrogate_key(['network_id', 'node_id']) }} as network_node_id,
    network_id,
    node_id,
    node_name,
    node_type,
    in_largest_component,
    criticality_score,
    betweenness_centrality,
    pagerank,
    degree_centrality,
    eigenvector_centrality,
    closeness_centrality,
    total_reach,
    cascade_risk_score,
    cascade_risk_score_normalized,
    betweenness_band,
    lat,
    lon,
    graph_version,
    computed_at
from source
