{#- The installation-level migration state (spec section 5, reports 008 and 010), kept
    as versions. Grain: one row per installation per version: its state as at the end of
    drop date valid_from, in force until valid_to (exclusive; NULL = current). The state
    as at the end of D is the version with valid_from <= D < valid_to
    (int_installation_status_eod; an installation with no version has no attempt and no
    exclusion yet).

    Installation-level: every attempt of the installation counts, whoever was
    responsible for it. A state can change only on a drop that carries one of the
    installation's attempts or exclusions, or a new completion version of one of its
    attempts: those drops are its versions, each computed from everything up to that
    drop. A history model (macros/materializations/delivery_history.sql).

    Attempt outcomes come from THE completion rule (int_attempt_completion_versions, the
    version in force at the end of the drop); an attempt without one is awaiting outcome.
    "Last" failure = latest completed_at, ties to the higher attempt_no (then attempt_id).
    exclusion_category / excluded_at (spec 008): the latest exclusion (ties: the higher
    category name); if none and at least five attempts failed, FIVE_FAILED_ATTEMPTS at
    the last failure's time; else NULL. is_retry_eligible: not excluded and the last
    failure's reason code is retryable in the reason_codes seed (a code missing from the
    seed is not retryable). -#}
{{ config(
    materialized='delivery_history',
    versions_key='installation_id',
    indexes=[{'columns': ['installation_id']}, {'columns': ['valid_from']}],
) }}

with attempts as not materialized (
    select * from {{ ref('stg_dcc__migration_attempts') }}
),

completions as not materialized (
    select * from {{ ref('int_attempt_completion_versions') }}
),

exclusions as not materialized (
    select * from {{ ref('stg_dcc__exclusions') }}
),

reason_codes as (
    select * from {{ ref('reason_codes') }}
),

touches as (
    select
        installation_id,
        _drop_date as valid_from
    from attempts
    where {{ in_history_increment('_drop_date') }}

    union

    select
        installation_id,
        valid_from
    from completions
    where {{ in_history_increment('valid_from') }}

    union

    select
        installation_id,
        _drop_date as valid_from
    from exclusions
    where {{ in_history_increment('_drop_date') }}
),

touched_attempts as (
    select
        touches.valid_from,
        attempts.installation_id,
        attempts.attempt_id,
        attempts.attempt_no
    from touches
    inner join attempts
        on
            touches.installation_id = attempts.installation_id
            and touches.valid_from >= attempts._drop_date
    where {{ among_history_keys('attempts.installation_id', 'select touched.installation_id from touches as touched') }}
),

attempt_outcomes as (
    {#- each attempt's completion version in force at the end of the drop (the same for
        every responsible party), looked up per attempt through the versions' index: as
        a join the planner, expecting a handful of touched attempts, nested a scan of all
        of them in a scan of the versions (full scale: minutes instead of seconds) -#}
    select
        touched_attempts.valid_from,
        touched_attempts.installation_id,
        touched_attempts.attempt_id,
        touched_attempts.attempt_no,
        completion.completion_status,
        completion.completed_at,
        completion.completion_reason_code
    from touched_attempts
    left join lateral (
        select
            completions.completion_status,
            completions.completed_at,
            completions.completion_reason_code
        from completions
        where
            completions.attempt_id = touched_attempts.attempt_id
            and completions.valid_from <= touched_attempts.valid_from
            and (completions.valid_to is null or completions.valid_to > touched_attempts.valid_from)
        order by completions.party_id asc
        limit 1
    ) as completion on true
),

installation_outcomes as (
    select
        installation_id,
        valid_from,
        bool_or(completion_status = 'Success') as has_success,
        count(*) filter (where completion_status = 'Failure') as failed_attempts,
        bool_or(completion_status is null) as has_awaiting_outcome
    from attempt_outcomes
    group by installation_id, valid_from
),

last_failures as (
    select distinct on (installation_id, valid_from)
        installation_id,
        valid_from,
        attempt_no,
        completion_reason_code,
        completed_at
    from attempt_outcomes
    where completion_status = 'Failure'
    order by
        installation_id asc, valid_from asc, completed_at desc, attempt_no desc, attempt_id collate "C" desc
),

latest_exclusions as (
    select distinct on (touches.installation_id, touches.valid_from)
        touches.installation_id,
        touches.valid_from,
        exclusions.exclusion_category,
        exclusions.excluded_at
    from touches
    inner join exclusions
        on
            touches.installation_id = exclusions.installation_id
            and touches.valid_from >= exclusions._drop_date
    order by
        touches.installation_id asc,
        touches.valid_from asc,
        exclusions.excluded_at desc,
        exclusions.exclusion_category collate "C" desc  -- noqa: RF02
),

states as (
    select
        touches.installation_id,
        touches.valid_from,
        coalesce(installation_outcomes.has_success, false) as has_success,
        coalesce(installation_outcomes.failed_attempts, 0) as failed_attempts,
        coalesce(installation_outcomes.has_awaiting_outcome, false) as has_awaiting_outcome,
        last_failures.attempt_no as last_attempt_no,
        last_failures.completion_reason_code as last_failure_reason_code,
        last_failures.completed_at as last_failed_at,
        coalesce(reason_codes.retryable = 'Y', false) as is_last_failure_retryable,
        case
            when latest_exclusions.installation_id is not null
                then latest_exclusions.exclusion_category
            when installation_outcomes.failed_attempts >= {{ max_failed_attempts() }}
                then 'FIVE_FAILED_ATTEMPTS'
        end as exclusion_category,
        case
            when latest_exclusions.installation_id is not null
                then latest_exclusions.excluded_at
            when installation_outcomes.failed_attempts >= {{ max_failed_attempts() }}
                then last_failures.completed_at
        end as excluded_at
    from touches
    left join installation_outcomes
        on
            touches.installation_id = installation_outcomes.installation_id
            and touches.valid_from = installation_outcomes.valid_from
    left join last_failures
        on
            touches.installation_id = last_failures.installation_id
            and touches.valid_from = last_failures.valid_from
    left join latest_exclusions
        on
            touches.installation_id = latest_exclusions.installation_id
            and touches.valid_from = latest_exclusions.valid_from
    left join reason_codes
        on last_failures.completion_reason_code = reason_codes.reason_code
)

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
    exclusion_category is null and is_last_failure_retryable as is_retry_eligible,
    valid_from,
    lead(valid_from) over (partition by installation_id order by valid_from) as valid_to
from states
