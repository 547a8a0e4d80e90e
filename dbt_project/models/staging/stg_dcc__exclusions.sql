{{ config(
    grain=['installation_id', 'excluded_at'],
    indexes=[{'columns': ['_drop_date']}, {'columns': ['installation_id']}],
) }}

with source as (
    {{ pending_raw_records('exclusions') }}
),

checked as (
    select
        source.*,
        {{ reject_reason_exclusions() }} as _reject_reason
    from source
)

select
    nullif(installation_id, '') as installation_id,
    nullif(exclusion_category, '') as exclusion_category,
    {{ parsed('excluded_at') }} as excluded_at,
    _drop_date,
    _row_number
from checked
where _reject_reason is null
