{{ config(
    grain=['event_id'],
    indexes=[{'columns': ['_drop_date']}, {'columns': ['attempt_id']}, {'columns': ['event_id']}],
) }}

with source as (
    {{ pending_raw_records('migration_events') }}
),

checked as (
    select
        source.*,
        {{ reject_reason_migration_events() }} as _reject_reason
    from source
)

select
    nullif(event_id, '') as event_id,
    nullif(attempt_id, '') as attempt_id,
    nullif(stage, '') as stage,
    {{ cast_if_valid('step_no', 'integer') }} as step_no,
    nullif(outcome, '') as outcome,
    nullif(reason_code, '') as reason_code,
    {{ parsed('event_ts') }} as event_ts,
    _drop_date,
    _row_number
from checked
where _reject_reason is null
