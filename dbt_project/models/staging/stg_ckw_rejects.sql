with source as (
    select * from {{ source('raw', 'ckw_rejects') }}
)

select
    {{ surrogate_key(['run_id', 'endpoint', 'record_hash']) }} as reject_id,
    run_id,
    endpoint,
    record_hash,
    rejected_at,
    {{ to_local('rejected_at') }} as rejected_at_local,
    reason,
    record
from source
