{#- Versions of an installation (first drop = the full base, then deltas). valid_to is
    the next version's effective_from; across deliveries the materialization keeps it
    (versions_key, macros/materializations/delivery_staging.sql), so a daily run types
    only the day's delta instead of the whole population. -#}
{{ config(
    grain=['installation_id', 'effective_from'],
    versions_key='installation_id',
    indexes=[{'columns': ['installation_id', 'effective_from']}, {'columns': ['_drop_date']}],
) }}

with source as (
    {{ pending_raw_records('installations') }}
),

checked as (
    select
        source.*,
        {{ reject_reason_installations() }} as _reject_reason
    from source
),

typed as (
    select
        nullif(installation_id, '') as installation_id,
        nullif(cohort, '') as cohort,
        nullif(group_id, '') as group_id,
        nullif(mpan, '') as mpan,
        nullif(mprn, '') as mprn,
        nullif(elec_supplier_id, '') as elec_supplier_id,
        nullif(gas_supplier_id, '') as gas_supplier_id,
        {{ cast_if_valid('eligible_from', 'date') }} as eligible_from,
        {{ parsed('effective_from') }} as effective_from,
        _drop_date,
        _row_number
    from checked
    where _reject_reason is null
)

select
    *,
    effective_from as valid_from,
    {{ next_version_from('installation_id') }} as valid_to
from typed
