{{ config(
    grain=['ma_file_name', 'ma_record_no'],
    indexes=[{'columns': ['_drop_date']}, {'columns': ['ma_file_name', 'ma_record_no']}],
) }}

with source as (
    {{ pending_raw_records('migration_authorisations') }}
),

checked as (
    select
        source.*,
        {{ reject_reason_migration_authorisations() }} as _reject_reason
    from source
)

select
    nullif(ma_file_name, '') as ma_file_name,
    {{ cast_if_valid('ma_record_no', 'integer') }} as ma_record_no,
    nullif(party_id, '') as party_id,
    {{ parsed('received_at') }} as received_at,
    nullif(installation_id, '') as installation_id,
    nullif(mpxn, '') as mpxn,
    {{ cast_if_valid('requested_migration_date', 'date') }} as requested_migration_date,
    nullif(ma_status, '') as ma_status,
    nullif(ma_error_code, '') as ma_error_code,
    _drop_date,
    _row_number
from checked
where _reject_reason is null
