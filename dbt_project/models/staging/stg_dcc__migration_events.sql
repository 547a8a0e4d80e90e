with source as (
    select * from {{ source('raw', 'migration_events') }}
)

select
    nullif(event_id, '') as event_id,
    nullif(attempt_id, '') as attempt_id,
    nullif(stage, '') as stage,
    nullif(step_no, '')::integer as step_no,
    nullif(outcome, '') as outcome,
    nullif(reason_code, '') as reason_code,
    nullif(event_ts, '')::timestamptz as event_ts,
    _drop_date,
    _file_name,
    _row_number
from source
