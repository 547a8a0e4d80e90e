{#- The installation-level migration state (spec section 5, reports 008 and 010), kept
    as versions. Grain: one row per installation per version: its state as at the end of
    drop date valid_from, in force until valid_to (exclusive; NULL = current). The state
    as at the end of D is the version with valid_from <= D < valid_to
    (int_installation_status_eod; an installation with no version has no attempt and no
    exclusion yet).

    Installation-level: every attempt of the installation counts, whoever was
    responsible for it. A state can change only on a drop that carries one of the
    installation's attempts or exclusions, or a new completion version of one of its
    attempts: those drops are its versions. Each moves forward from the version before
    it (below, `held`), so a day reads the day's attempts and completions and one version
    per touched installation, not every attempt of it. A history model
    (macros/materializations/delivery_history.sql); its pages are filled to 85 % so that
    closing a version (about 200,000 a national day) stays on the row's page, without new
    index entries. Two columns carry what the next
    version needs and the reports do not: awaiting_attempts (has_awaiting_outcome is
    awaiting_attempts > 0) and last_failed_attempt_id (the last failure's tie-break).

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
    fillfactor=85,
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

held as (
    {#- The state moves forward from the version in force before F, the run's rebuild-from
        date (`held`; none when the model is built whole, F = -infinity): what can change it
        from F on is an attempt delivered (one more awaiting an outcome) or a completion made
        (one fewer awaiting; a Success, or one more Failure that may be the last), each dated
        by its drop. A completion is final and made only once its attempt is known, so the
        state as at the end of a touched drop date is `held` plus the attempts and
        completions dated from F up to that date. Built whole it is every attempt and
        completion up to that date, as the rule reads. -#}
    {%- if is_incremental() %}
        select
            held.installation_id,
            held.has_success,
            held.failed_attempts,
            held.awaiting_attempts,
            held.last_attempt_no,
            held.last_failed_attempt_id,
            held.last_failure_reason_code,
            held.last_failed_at
        from {{ this }} as held
        where
            {{ among_history_keys('held.installation_id', 'select touched.installation_id from touches as touched') }}
            and not ({{ in_history_increment('held.valid_from') }})
            and (held.valid_to is null or {{ in_history_increment('held.valid_to') }})
    {%- else %}
        select
            null::text as installation_id,
            false as has_success,
            0::bigint as failed_attempts,
            0::bigint as awaiting_attempts,
            null::integer as last_attempt_no,
            null::text as last_failed_attempt_id,
            null::text as last_failure_reason_code,
            null::timestamptz as last_failed_at
        where false
    {%- endif %}
),

new_attempts as (
    select
        touches.installation_id,
        touches.valid_from,
        count(*) as delivered
    from touches
    inner join attempts
        on
            touches.installation_id = attempts.installation_id
            and touches.valid_from >= attempts._drop_date
    where {{ in_history_increment('attempts._drop_date') }}
    group by touches.installation_id, touches.valid_from
),

attempt_completions as (
    {#- one row per completed attempt: its completion is the same for every responsible
        party -#}
    select distinct on (attempt_id)
        installation_id,
        attempt_id,
        attempt_no,
        valid_from,
        completion_status,
        completed_at,
        completion_reason_code
    from completions
    where {{ in_history_increment('valid_from') }}
    order by attempt_id asc, party_id asc
),

new_completions as (
    select
        touches.installation_id,
        touches.valid_from,
        attempt_completions.attempt_id,
        attempt_completions.attempt_no,
        attempt_completions.completion_status,
        attempt_completions.completed_at,
        attempt_completions.completion_reason_code
    from touches
    inner join attempt_completions
        on
            touches.installation_id = attempt_completions.installation_id
            and touches.valid_from >= attempt_completions.valid_from
),

installation_outcomes as (
    select
        installation_id,
        valid_from,
        count(*) as completed,
        bool_or(completion_status = 'Success') as has_success,
        count(*) filter (where completion_status = 'Failure') as failed_attempts
    from new_completions
    group by installation_id, valid_from
),

failures as (
    select
        installation_id,
        valid_from,
        attempt_id,
        attempt_no,
        completion_reason_code,
        completed_at
    from new_completions
    where completion_status = 'Failure'

    union all

    select
        touches.installation_id,
        touches.valid_from,
        held.last_failed_attempt_id as attempt_id,
        held.last_attempt_no as attempt_no,
        held.last_failure_reason_code as completion_reason_code,
        held.last_failed_at as completed_at
    from touches
    inner join held on touches.installation_id = held.installation_id
    where held.last_failed_at is not null
),

last_failures as (
    select distinct on (installation_id, valid_from)
        installation_id,
        valid_from,
        attempt_id,
        attempt_no,
        completion_reason_code,
        completed_at
    from failures
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
        coalesce(held.has_success, false) or coalesce(installation_outcomes.has_success, false) as has_success,
        coalesce(held.failed_attempts, 0) + coalesce(installation_outcomes.failed_attempts, 0) as failed_attempts,
        coalesce(held.awaiting_attempts, 0) + coalesce(new_attempts.delivered, 0)
        - coalesce(installation_outcomes.completed, 0) as awaiting_attempts,
        last_failures.attempt_no as last_attempt_no,
        last_failures.attempt_id as last_failed_attempt_id,
        last_failures.completion_reason_code as last_failure_reason_code,
        last_failures.completed_at as last_failed_at,
        coalesce(reason_codes.retryable = 'Y', false) as is_last_failure_retryable,
        latest_exclusions.installation_id is not null as is_excluded,
        latest_exclusions.exclusion_category,
        latest_exclusions.excluded_at
    from touches
    left join held on touches.installation_id = held.installation_id
    left join new_attempts
        on
            touches.installation_id = new_attempts.installation_id
            and touches.valid_from = new_attempts.valid_from
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
    awaiting_attempts > 0 as has_awaiting_outcome,
    last_attempt_no,
    last_failure_reason_code,
    last_failed_at,
    is_last_failure_retryable,
    case
        when is_excluded then exclusion_category
        when failed_attempts >= {{ max_failed_attempts() }} then 'FIVE_FAILED_ATTEMPTS'
    end as exclusion_category,
    case
        when is_excluded then excluded_at
        when failed_attempts >= {{ max_failed_attempts() }} then last_failed_at
    end as excluded_at,
    (
        not is_excluded
        and failed_attempts < {{ max_failed_attempts() }}
        and is_last_failure_retryable
    ) as is_retry_eligible,
    {#- carried to the next version, which moves forward from this one -#}
    awaiting_attempts,
    last_failed_attempt_id,
    valid_from,
    lead(valid_from) over (partition by installation_id order by valid_from) as valid_to
from states
