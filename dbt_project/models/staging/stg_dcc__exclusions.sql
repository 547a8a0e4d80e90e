with source as (
    select * from {{ source('raw', 'exclusions') }}
)

select
    nullif(installation_id, '') as installation_id,
    nullif(exclusion_category, '') as exclusion_category,
    nullif(excluded_at, '')::timestamptz as excluded_at,
    _drop_date,
    _file_name,
    _row_number
from source
