{#- THE completion rule (spec section 4), the one definition every report uses, kept as
    versions. Grain: one row per COMPLETED attempt per responsible party per version:
    its state as at the end of drop date valid_from, in force until valid_to (exclusive;
    NULL = still current). The state as at the end of D is the version with
    valid_from <= D < valid_to (the view int_attempt_completions).

    Every staged record lies in the drop of its own local day (the first drop: or
    before), so the state as at the end of D depends only on the drops up to D, and an
    attempt's state can change only on a drop that carries one of its records (its
    attempt row, an event or a COF record): those drops are its versions. A history
    model (macros/incremental_history.sql): a run computes the versions of the drops
    from its rebuild-from date on; the day's run computes the attempts the day's drop
    touches, each from all of its records up to that drop.

    Failure: any FAIL event (any stage after MA validation, MCF and MVF included) or
    FAILURE COF record; completed_at and the reason/stage/step come from the earliest
    failure, ties broken by lower step number, then lower event_id / cof_file_name.
    Success: no failure, a COMMISSIONING PASS event, and a SUCCESS COF record for every
    responsible party; completed_at = the latest of those parties' COF generated_at
    (each party's COF = its SUCCESS record with the lowest counter).
    Anything else is awaiting outcome and has no version. Once complete an attempt stays
    complete (records are only added); a later record can change a Success into a
    Failure, which is a new version. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[
        {'columns': ['attempt_id', 'party_id']},
        {'columns': ['completed_on']},
        {'columns': ['valid_from']},
    ],
    pre_hook="{{ begin_versions_increment() }}",
    post_hook="{{ end_versions_increment(['attempt_id', 'party_id']) }}",
) }}

with responsibilities as not materialized (
    select * from {{ ref('int_attempt_responsibilities') }}
),

events as not materialized (
    select * from {{ ref('stg_dcc__migration_events') }}
),

cof_records as not materialized (
    select * from {{ ref('stg_dcc__cof_records') }}
),

touches as (
    {#- (attempt, drop date) for every drop that carries a record of the attempt: a
        candidate version, computed from the attempt's records up to that drop. -#}
    select
        attempt_id,
        _drop_date as valid_from
    from responsibilities
    where {{ in_history_increment('_drop_date') }}

    union

    select
        attempt_id,
        _drop_date as valid_from
    from events
    where {{ in_history_increment('_drop_date') }}

    union

    select
        attempt_id,
        _drop_date as valid_from
    from cof_records
    where {{ in_history_increment('_drop_date') }}
),

touched_events as (
    select
        touches.valid_from,
        events.*
    from touches
    inner join events
        on
            touches.attempt_id = events.attempt_id
            and touches.valid_from >= events._drop_date
    where {{ among_history_keys('events.attempt_id', 'select touched.attempt_id from touches as touched') }}
),

touched_cof_records as (
    select
        touches.valid_from,
        cof_records.*
    from touches
    inner join cof_records
        on
            touches.attempt_id = cof_records.attempt_id
            and touches.valid_from >= cof_records._drop_date
    where {{ among_history_keys('cof_records.attempt_id', 'select touched.attempt_id from touches as touched') }}
),

failures as (
    select
        attempt_id,
        valid_from,
        event_ts as failed_at,
        stage as failed_stage,
        step_no as tmad_step_no,
        reason_code,
        event_id as tie_key
    from touched_events
    where outcome = 'FAIL'

    union all

    select
        attempt_id,
        valid_from,
        generated_at as failed_at,
        'COF' as failed_stage,
        60 as tmad_step_no,
        reason_code,
        cof_file_name as tie_key
    from touched_cof_records
    where response = 'FAILURE'
),

first_failures as (
    select distinct on (attempt_id, valid_from) *
    from failures
    order by attempt_id asc, valid_from asc, failed_at asc, tmad_step_no asc, tie_key collate "C" asc
),

commissioned as (
    select distinct
        attempt_id,
        valid_from
    from touched_events
    where stage = 'COMMISSIONING' and outcome = 'PASS'
),

party_success_cofs as (
    select distinct on (attempt_id, valid_from, party_id)
        attempt_id,
        valid_from,
        party_id,
        cof_file_name,
        generated_at
    from touched_cof_records
    where response = 'SUCCESS'
    order by
        attempt_id asc, valid_from asc, party_id asc, cof_counter asc, cof_file_name collate "C" asc
),

attempt_parties as (
    select
        touches.valid_from,
        responsibilities.attempt_id,
        responsibilities.installation_id,
        responsibilities.attempt_no,
        responsibilities.party_id,
        responsibilities.fuel,
        responsibilities.mpan,
        responsibilities.mprn,
        responsibilities.cohort,
        responsibilities.group_id,
        responsibilities.requesting_party_id,
        responsibilities.scheduled_at,
        responsibilities.scheduled_for,
        party_success_cofs.cof_file_name as success_cof_file_name,
        party_success_cofs.generated_at as success_cof_generated_at
    from touches
    inner join responsibilities
        on
            touches.attempt_id = responsibilities.attempt_id
            and touches.valid_from >= responsibilities._drop_date
            and {{ among_history_keys(
                'responsibilities.attempt_id', 'select touched.attempt_id from touches as touched'
            ) }}
    left join party_success_cofs
        on
            responsibilities.attempt_id = party_success_cofs.attempt_id
            and responsibilities.party_id = party_success_cofs.party_id
            and touches.valid_from = party_success_cofs.valid_from
),

successes as (
    select
        attempt_parties.attempt_id,
        attempt_parties.valid_from,
        max(attempt_parties.success_cof_generated_at) as completed_at
    from attempt_parties
    inner join commissioned
        on
            attempt_parties.attempt_id = commissioned.attempt_id
            and attempt_parties.valid_from = commissioned.valid_from
    where
        not exists (
            select 1 from first_failures
            where
                first_failures.attempt_id = attempt_parties.attempt_id
                and first_failures.valid_from = attempt_parties.valid_from
        )
    group by attempt_parties.attempt_id, attempt_parties.valid_from
    having count(*) = count(attempt_parties.success_cof_file_name)
),

outcomes as (
    select
        attempt_id,
        valid_from,
        'Failure' as completion_status,
        failed_at as completed_at,
        reason_code as completion_reason_code,
        failed_stage,
        tmad_step_no
    from first_failures

    union all

    select
        attempt_id,
        valid_from,
        'Success' as completion_status,
        completed_at,
        null as completion_reason_code,
        null as failed_stage,
        null::integer as tmad_step_no
    from successes
)

select
    attempt_parties.attempt_id,
    attempt_parties.installation_id,
    attempt_parties.attempt_no,
    attempt_parties.party_id,
    attempt_parties.fuel,
    attempt_parties.mpan,
    attempt_parties.mprn,
    attempt_parties.cohort,
    attempt_parties.group_id,
    attempt_parties.requesting_party_id,
    attempt_parties.scheduled_at,
    attempt_parties.scheduled_for,
    outcomes.completion_status,
    outcomes.completed_at,
    {{ local_date('outcomes.completed_at') }} as completed_on,
    outcomes.completion_reason_code,
    outcomes.failed_stage,
    outcomes.tmad_step_no,
    case
        when outcomes.completion_status = 'Success' then attempt_parties.success_cof_file_name
    end as success_cof_file_name,
    attempt_parties.valid_from,
    lead(attempt_parties.valid_from) over (
        partition by attempt_parties.attempt_id, attempt_parties.party_id
        order by attempt_parties.valid_from
    ) as valid_to
from attempt_parties
inner join outcomes
    on
        attempt_parties.attempt_id = outcomes.attempt_id
        and attempt_parties.valid_from = outcomes.valid_from
