with source as (
    select * from {{ source('raw', 'migration_authorisations') }}
)

select
    nullif(ma_file_name, '') as ma_file_name,
    nullif(ma_record_no, '')::integer as ma_record_no,
    nullif(party_id, '') as party_id,
    nullif(received_at, '')::timestamptz as received_at,
    nullif(installation_id, '') as installation_id,
    nullif(mpxn, '') as mpxn,
    nullif(requested_migration_date, '')::date as requested_migration_date,
    nullif(ma_status, '') as ma_status,
    nullif(ma_error_code, '') as ma_error_code,
    _drop_date,
    _file_name,
    _row_number
from source
