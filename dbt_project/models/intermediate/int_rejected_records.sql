{#- Grain: one row per landed record that cannot be reported: a value-level reject
    (stg_dcc__rejects) or a valid record whose references do not resolve (an attempt
    with no installation version at scheduled_at, an event or COF record for an unknown
    attempt). Nothing is dropped silently: the gate blocks every report date whose drops
    hold any of these, naming them.
    A history model (macros/incremental_history.sql): a run checks the records of the
    drops from its rebuild-from date on, against everything landed. A reference that a
    later drop resolves (an event delivered a day before its attempt) stays rejected
    until a correction rebuilds the model: as at the event's drop it was unresolved. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['_drop_date']}],
    pre_hook="{{ begin_history_increment('_drop_date') }}",
    post_hook="{{ end_history_increment() }}",
) }}

with value_rejects as (
    select * from {{ ref('stg_dcc__rejects') }}
    where {{ in_history_increment('_drop_date') }}
),

attempts as not materialized (
    select * from {{ ref('stg_dcc__migration_attempts') }}
),

installations as not materialized (
    select * from {{ ref('stg_dcc__installations') }}
),

events as not materialized (
    select * from {{ ref('stg_dcc__migration_events') }}
),

cof_records as not materialized (
    select * from {{ ref('stg_dcc__cof_records') }}
),

attempts_without_installation as (
    select
        'migration_attempts' as extract_name,
        attempts._drop_date,
        attempts._file_name,
        attempts._row_number,
        'installation ' || attempts.installation_id || ' has no version at scheduled_at '
        || attempts.scheduled_at::text as reject_reason
    from attempts
    where
        {{ in_history_increment('attempts._drop_date') }}
        and not exists (
            select 1 from installations
            where
                installations.installation_id = attempts.installation_id
                and installations.valid_from <= attempts.scheduled_at
                and (installations.valid_to is null or attempts.scheduled_at < installations.valid_to)
        )
),

events_without_attempt as (
    select
        'migration_events' as extract_name,
        events._drop_date,
        events._file_name,
        events._row_number,
        'attempt_id ' || events.attempt_id || ' is not a known attempt' as reject_reason
    from events
    where
        {{ in_history_increment('events._drop_date') }}
        and not exists (
            select 1 from attempts
            where attempts.attempt_id = events.attempt_id
        )
),

cofs_without_attempt as (
    select
        'cof_records' as extract_name,
        cof_records._drop_date,
        cof_records._file_name,
        cof_records._row_number,
        'attempt_id ' || cof_records.attempt_id || ' is not a known attempt' as reject_reason
    from cof_records
    where
        {{ in_history_increment('cof_records._drop_date') }}
        and not exists (
            select 1 from attempts
            where attempts.attempt_id = cof_records.attempt_id
        )
),

unresolved as (
    select * from attempts_without_installation
    union all
    select * from events_without_attempt
    union all
    select * from cofs_without_attempt
)

select
    extract_name,
    _drop_date,
    _file_name,
    _row_number,
    _row_number + 1 as line_no,
    reject_reason
from value_rejects

union all

select
    extract_name,
    _drop_date,
    _file_name,
    _row_number,
    _row_number + 1 as line_no,
    reject_reason
from unresolved
