with source as (
    select * from {{ source('raw', 'installations') }}
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
        nullif(eligible_from, '')::date as eligible_from,
        nullif(effective_from, '')::timestamptz as effective_from,
        _drop_date,
        _file_name,
        _row_number
    from source
)

select
    *,
    effective_from as valid_from,
    lead(effective_from) over (partition by installation_id order by effective_from) as valid_to
from typed
