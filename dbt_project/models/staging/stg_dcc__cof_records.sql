{{ config(
    grain=['attempt_id', 'cof_file_name'],
    indexes=[{'columns': ['_drop_date']}, {'columns': ['attempt_id']}],
) }}

with source as (
    {{ pending_raw_records('cof_records') }}
),

checked as (
    select
        source.*,
        {{ reject_reason_cof_records() }} as _reject_reason
    from source
)

select
    nullif(cof_file_name, '') as cof_file_name,
    {{ cast_if_valid('cof_counter', 'bigint') }} as cof_counter,
    nullif(party_id, '') as party_id,
    nullif(sec_party_signifier, '') as sec_party_signifier,
    {{ parsed('generated_at') }} as generated_at,
    nullif(attempt_id, '') as attempt_id,
    nullif(installation_id, '') as installation_id,
    nullif(response, '') as response,
    nullif(reason_code, '') as reason_code,
    _drop_date,
    _row_number
from checked
where _reject_reason is null
