{#- Grain: one row per installation with a version before the end of the report date:
    its migration state as at the end of D, installation-level (every attempt of the
    installation counts, whoever was responsible for it), shared by S1MIG-008 and
    S1MIG-010 so both read one definition.

    Attempt outcomes come from THE completion rule (int_attempt_completions); an attempt
    scheduled before the end of D that is not there is awaiting outcome.
    "Last" failure = latest completed_at, ties to the higher attempt_no (then attempt_id).
    exclusion_category / excluded_at (spec 008): the latest exclusion with excluded_at
    before the end of D (ties: the higher category name); if none and at least five
    attempts failed, FIVE_FAILED_ATTEMPTS at the last failure's time; else NULL.
    is_retry_eligible: not excluded and the last failure's reason code is retryable in
    the reason_codes seed (a code missing from the seed is not retryable). -#}
with installations as (
    select distinct installation_id
    from {{ ref('stg_dcc__installations') }}
    where effective_from < {{ report_day_end() }}
),

attempts as (
    select
        attempt_id,
        installation_id,
        attempt_no
    from {{ ref('stg_dcc__migration_attempts') }}
    where scheduled_at < {{ report_day_end() }}
),

completions as (
    select distinct on (attempt_id)
        attempt_id,
        completion_status,
        completed_at,
        completion_reason_code
    from {{ ref('int_attempt_completions') }}
    order by attempt_id asc
),

exclusions as (
    select * from {{ ref('stg_dcc__exclusions') }}
    where excluded_at < {{ report_day_end() }}
),

reason_codes as (
    select * from {{ ref('reason_codes') }}
),

attempt_outcomes as (
    select
        attempts.attempt_id,
        attempts.installation_id,
        attempts.attempt_no,
        completions.completion_status,
        completions.completed_at,
        completions.completion_reason_code
    from attempts
    left join completions on attempts.attempt_id = completions.attempt_id
),

installation_outcomes as (
    select
        installation_id,
        bool_or(completion_status = 'Success') as has_success,
        count(*) filter (where completion_status = 'Failure') as failed_attempts,
        bool_or(completion_status is null) as has_awaiting_outcome
    from attempt_outcomes
    group by installation_id
),

last_failures as (
    select distinct on (installation_id)
        installation_id,
        attempt_no,
        completion_reason_code,
        completed_at
    from attempt_outcomes
    where completion_status = 'Failure'
    order by installation_id asc, completed_at desc, attempt_no desc, attempt_id collate "C" desc
),

latest_exclusions as (
    select distinct on (installation_id)
        installation_id,
        exclusion_category,
        excluded_at
    from exclusions
    order by installation_id asc, excluded_at desc, exclusion_category collate "C" desc
),

states as (
    select
        installations.installation_id,
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
    from installations
    left join installation_outcomes
        on installations.installation_id = installation_outcomes.installation_id
    left join last_failures
        on installations.installation_id = last_failures.installation_id
    left join latest_exclusions
        on installations.installation_id = latest_exclusions.installation_id
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
    exclusion_category is null and is_last_failure_retryable as is_retry_eligible
from states
