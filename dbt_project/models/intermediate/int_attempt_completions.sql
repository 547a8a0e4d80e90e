{#- THE completion rule (spec section 4), the one definition every report uses.
    Grain: one row per COMPLETED attempt per responsible party, as at the end of the
    report date (inputs after end of D are ignored, so a re-run of D is reproducible).

    Failure: any FAIL event (any stage after MA validation, MCF and MVF included) or
    FAILURE COF record; completed_at and the reason/stage/step come from the earliest
    failure, ties broken by lower step number, then lower event_id / cof_file_name.
    Success: no failure, a COMMISSIONING PASS event, and a SUCCESS COF record for every
    responsible party; completed_at = the latest of those parties' COF generated_at
    (each party's COF = its SUCCESS record with the lowest counter).
    Anything else is awaiting outcome and is not in this model. -#}
with responsibilities as (
    select * from {{ ref('int_attempt_responsibilities') }}
),

events as (
    select * from {{ ref('stg_dcc__migration_events') }}
    where event_ts < {{ report_day_end() }}
),

cof_records as (
    select * from {{ ref('stg_dcc__cof_records') }}
    where generated_at < {{ report_day_end() }}
),

failures as (
    select
        attempt_id,
        event_ts as failed_at,
        stage as failed_stage,
        step_no as tmad_step_no,
        reason_code,
        event_id as tie_key
    from events
    where outcome = 'FAIL'

    union all

    select
        attempt_id,
        generated_at as failed_at,
        'COF' as failed_stage,
        60 as tmad_step_no,
        reason_code,
        cof_file_name as tie_key
    from cof_records
    where response = 'FAILURE'
),

first_failures as (
    select distinct on (attempt_id) *
    from failures
    order by attempt_id asc, failed_at asc, tmad_step_no asc, tie_key collate "C" asc
),

commissioned as (
    select distinct attempt_id
    from events
    where stage = 'COMMISSIONING' and outcome = 'PASS'
),

party_success_cofs as (
    select distinct on (attempt_id, party_id)
        attempt_id,
        party_id,
        cof_file_name,
        generated_at
    from cof_records
    where response = 'SUCCESS'
    order by attempt_id asc, party_id asc, cof_counter asc, cof_file_name collate "C" asc
),

attempt_parties as (
    select
        responsibilities.*,
        party_success_cofs.cof_file_name as success_cof_file_name,
        party_success_cofs.generated_at as success_cof_generated_at
    from responsibilities
    left join party_success_cofs
        on
            responsibilities.attempt_id = party_success_cofs.attempt_id
            and responsibilities.party_id = party_success_cofs.party_id
),

successes as (
    select
        attempt_parties.attempt_id,
        max(attempt_parties.success_cof_generated_at) as completed_at
    from attempt_parties
    inner join commissioned on attempt_parties.attempt_id = commissioned.attempt_id
    where
        not exists (
            select 1 from first_failures
            where first_failures.attempt_id = attempt_parties.attempt_id
        )
    group by attempt_parties.attempt_id
    having count(*) = count(attempt_parties.success_cof_file_name)
),

outcomes as (
    select
        attempt_id,
        'Failure' as completion_status,
        failed_at as completed_at,
        reason_code as completion_reason_code,
        failed_stage,
        tmad_step_no
    from first_failures

    union all

    select
        attempt_id,
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
    end as success_cof_file_name
from attempt_parties
inner join outcomes on attempt_parties.attempt_id = outcomes.attempt_id
