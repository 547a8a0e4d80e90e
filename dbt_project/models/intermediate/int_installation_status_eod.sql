{#- Grain: one row per installation with a migration-state version in force at the end
    of the report date (an attempt or an exclusion delivered by then): its migration
    state as at the end of D (installation-level, shared by S1MIG-008 and S1MIG-010 so
    both read one definition). The state and its rules live in
    int_installation_status_versions; this model takes the version in force at the end
    of D. An installation without one (no attempt, no exclusion yet) has no row: its
    state is the empty one (no success, no failure, nothing awaiting, not excluded, not
    retry eligible), which S1MIG-008 never lists and S1MIG-010 counts as
    not_yet_attempted (progress_category, macros/reporting.sql). Keeping only these
    installations keeps the table the size of the migration, not of the population
    (docs/performance.md).
    A report state (macros/materializations/report_state.sql): a run recomputes only the
    installations with a version, or a version of their migration state, delivered
    between the date last built and D; the other rows are as at the end of D already. -#}
-- depends_on: {{ ref('stg_dcc__installations') }} (a state change, installation_state_changes())
{{ config(
    materialized='report_state',
    state_key='installation_id',
    state_changes=installation_state_changes(),
    grain=['installation_id'],
    indexes=[{'columns': ['installation_id']}],
) }}

select
    installation_id,
    has_success,
    failed_attempts,
    has_awaiting_outcome,
    last_attempt_no,
    last_failure_reason_code,
    last_failed_at,
    is_last_failure_retryable,
    exclusion_category,
    excluded_at,
    is_retry_eligible
from {{ ref('int_installation_status_versions') }}
where
    valid_from <= {{ report_date() }}
    and (valid_to is null or valid_to > {{ report_date() }})
    and {{ among_state_changes('installation_id') }}
