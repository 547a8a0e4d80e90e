{{ config(
    grain=['migration_date', 'party_id', 'allocated_at'],
    indexes=[{'columns': ['_drop_date']}],
) }}

with source as (
    {{ pending_raw_records('capacity_allocations') }}
),

checked as (
    select
        source.*,
        {{ reject_reason_capacity_allocations() }} as _reject_reason
    from source
)

select
    {{ cast_if_valid('migration_date', 'date') }} as migration_date,
    nullif(party_id, '') as party_id,
    {{ cast_if_valid('demand', 'integer') }} as demand,
    {{ cast_if_valid('allocation', 'integer') }} as allocation,
    {{ parsed('allocated_at') }} as allocated_at,
    _drop_date,
    _row_number
from checked
where _reject_reason is null
