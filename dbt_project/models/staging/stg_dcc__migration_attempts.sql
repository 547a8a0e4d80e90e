{{ config(
    grain=['attempt_id'],
    indexes=[{'columns': ['_drop_date']}, {'columns': ['attempt_id']}, {'columns': ['installation_id']}],
) }}

with source as (
    {{ pending_raw_records('migration_attempts') }}
),

checked as (
    select
        source.*,
        {{ reject_reason_migration_attempts() }} as _reject_reason
    from source
)

select
    nullif(attempt_id, '') as attempt_id,
    nullif(installation_id, '') as installation_id,
    {{ cast_if_valid('attempt_no', 'integer') }} as attempt_no,
    nullif(ma_file_name, '') as ma_file_name,
    {{ cast_if_valid('ma_record_no', 'integer') }} as ma_record_no,
    nullif(party_id, '') as party_id,
    {{ parsed('scheduled_at') }} as scheduled_at,
    {{ cast_if_valid('scheduled_for', 'date') }} as scheduled_for,
    _drop_date,
    _row_number
from checked
where _reject_reason is null
