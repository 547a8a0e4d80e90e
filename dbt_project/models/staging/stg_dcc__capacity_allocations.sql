with source as (
    select * from {{ source('raw', 'capacity_allocations') }}
)

select
    nullif(migration_date, '')::date as migration_date,
    nullif(party_id, '') as party_id,
    nullif(demand, '')::integer as demand,
    nullif(allocation, '')::integer as allocation,
    nullif(allocated_at, '')::timestamptz as allocated_at,
    _drop_date,
    _file_name,
    _row_number
from source
