{{ config(
    grain=['party_id', 'effective_from'],
    full_refresh=true,
) }}

with source as (
    {{ pending_raw_records('parties') }}
),

checked as (
    select
        source.*,
        {{ reject_reason_parties() }} as _reject_reason
    from source
),

typed as (
    select
        nullif(party_id, '') as party_id,
        nullif(party_name, '') as party_name,
        nullif(sec_party_signifier, '') as sec_party_signifier,
        nullif(affiliate_group, '') as affiliate_group,
        {{ parsed('effective_from') }} as effective_from,
        _drop_date,
        _row_number
    from checked
    where _reject_reason is null
)

select
    *,
    effective_from as valid_from,
    {{ next_version_from('party_id') }} as valid_to
from typed
