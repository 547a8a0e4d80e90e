{#- Grain: one row per installation with a version before the end of the report date:
    its migration state as at the end of D (installation-level, shared by S1MIG-008 and
    S1MIG-010 so both read one definition). The state and its rules live in
    int_installation_status_versions; this model takes the version in force at the end
    of D, and gives an installation without one (no attempt, no exclusion yet) the empty
    state: no success, no failure, nothing awaiting, not excluded, not retry eligible.
    A report state (macros/materializations/report_state.sql): a run recomputes only the
    installations with a version, or a version of their migration state, delivered
    between the date last built and D; the other rows are as at the end of D already. -#}
{{ config(
    materialized='report_state',
    state_key='installation_id',
    state_changes=installation_state_changes(),
    grain=['installation_id'],
    indexes=[{'columns': ['installation_id']}],
) }}

with installations as (
    {#- moved forward (D after R), a key with a row at the end of R (now in `__replaced`)
        has a version before the end of D: only the other changed keys are looked up -#}
    {%- if report_state_forward() %}
        select replaced.installation_id
        from {{ replaced_state(this) }} as replaced

        union all
    {%- endif %}

    select distinct installation_id
    from {{ ref('stg_dcc__installations') }}
    where
        effective_from < {{ report_day_end() }}
        and {{ among_state_changes('installation_id', unless_in=replaced_state(this) if report_state_forward()) }}
),

versions as (
    select * from {{ ref('int_installation_status_versions') }}
    where
        valid_from <= {{ report_date() }}
        and (valid_to is null or valid_to > {{ report_date() }})
        and {{ among_state_changes('installation_id') }}
)

select
    installations.installation_id,
    coalesce(versions.has_success, false) as has_success,
    coalesce(versions.failed_attempts, 0) as failed_attempts,
    coalesce(versions.has_awaiting_outcome, false) as has_awaiting_outcome,
    versions.last_attempt_no,
    versions.last_failure_reason_code,
    versions.last_failed_at,
    coalesce(versions.is_last_failure_retryable, false) as is_last_failure_retryable,
    versions.exclusion_category,
    versions.excluded_at,
    coalesce(versions.is_retry_eligible, false) as is_retry_eligible
from installations
left join versions on installations.installation_id = versions.installation_id
