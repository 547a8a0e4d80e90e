with source as (
    select * from {{ source('raw', 'cof_records') }}
)

select
    nullif(cof_file_name, '') as cof_file_name,
    nullif(cof_counter, '')::bigint as cof_counter,
    nullif(party_id, '') as party_id,
    nullif(sec_party_signifier, '') as sec_party_signifier,
    nullif(generated_at, '')::timestamptz as generated_at,
    nullif(attempt_id, '') as attempt_id,
    nullif(installation_id, '') as installation_id,
    nullif(response, '') as response,
    nullif(reason_code, '') as reason_code,
    _drop_date,
    _file_name,
    _row_number
from source
