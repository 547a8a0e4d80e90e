with source as (
    select * from {{ source('raw', 'migration_attempts') }}
)

select
    nullif(attempt_id, '') as attempt_id,
    nullif(installation_id, '') as installation_id,
    nullif(attempt_no, '')::integer as attempt_no,
    nullif(ma_file_name, '') as ma_file_name,
    nullif(ma_record_no, '')::integer as ma_record_no,
    nullif(party_id, '') as party_id,
    nullif(scheduled_at, '')::timestamptz as scheduled_at,
    nullif(scheduled_for, '')::date as scheduled_for,
    _drop_date,
    _file_name,
    _row_number
from source
