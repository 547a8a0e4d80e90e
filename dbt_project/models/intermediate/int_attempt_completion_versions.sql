{#- THE completion rule (spec section 4, contract v1.1), the one definition every report
    uses. Grain: one row per COMPLETED attempt per responsible party: its completion,
    fixed on valid_from, the first drop date as at whose end the attempt was complete
    (valid_to is always NULL: completion is final). The completions as at the end of D
    are the rows with valid_from <= D (the view int_attempt_completions).

    Every staged record lies in the drop of its own local day (the first drop: or
    before), so the state as at the end of D depends only on the drops up to D, and an
    attempt can become complete only on a drop that carries one of its records (its
    attempt row, an event or a COF record): those drops are its candidate dates, each
    judged from all of the attempt's records up to that drop. The first candidate on
    which it is complete wins; an attempt already complete before the run's rebuild-from
    date is not judged again. A history model (macros/materializations/delivery_history.sql)
    whose versions are final (`versions_final`): the unique index on (attempt_id,
    party_id) refuses a second version of a key, e.g. an attempt judged again after it
    completed.

    As at the end of a drop date, with f the earliest failure and s the Success time:
    - failures: any FAIL event (any stage after MA validation, MCF and MVF included) or
      FAILURE COF record of a responsible party; f and the reason/stage/step come from
      the earliest, ties broken by lower step number, then lower event_id /
      cof_file_name. A COF record of a party not responsible for the attempt counts for
      nothing (SUCCESS or FAILURE).
    - s (whatever the failures): the latest of the earliest COMMISSIONING PASS event_ts
      and, for every responsible party, the generated_at of its SUCCESS COF with the
      lowest counter; no s while the PASS or any party's SUCCESS COF is missing.
    - Failure at f when f exists and its local date is on or before that of s (or there
      is no s), even when f is later that day than s; otherwise Success at s; otherwise
      awaiting outcome (no row). A failure on a later date than a Success is a late
      record (warning W2 of the gate), never a change of the completion. -#}
{{ config(
    materialized='delivery_history',
    versions_key=['attempt_id', 'party_id'],
    versions_final=true,
    indexes=[
        {'columns': ['attempt_id', 'party_id'], 'unique': true},
        {'columns': ['completed_on']},
        {'columns': ['valid_from']},
    ],
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
    {#- only the events the rule reads: failures and commissioning passes -#}
    select
        touches.valid_from,
        events.*
    from touches
    inner join events
        on
            touches.attempt_id = events.attempt_id
            and touches.valid_from >= events._drop_date
    where
        {{ among_history_keys('events.attempt_id', 'select touched.attempt_id from touches as touched') }}
        and (events.outcome = 'FAIL' or (events.stage = 'COMMISSIONING' and events.outcome = 'PASS'))
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

touched_responsibilities as (
    {#- the attempt's responsible parties (fixed at scheduled_at), for each candidate -#}
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
        responsibilities.scheduled_for
    from touches
    inner join responsibilities
        on
            touches.attempt_id = responsibilities.attempt_id
            and touches.valid_from >= responsibilities._drop_date
            and {{ among_history_keys(
                'responsibilities.attempt_id', 'select touched.attempt_id from touches as touched'
            ) }}
),

responsible_cof_records as (
    {#- a COF record for a party not responsible for the attempt counts for nothing -#}
    select touched_cof_records.*
    from touched_cof_records
    inner join touched_responsibilities
        on
            touched_cof_records.attempt_id = touched_responsibilities.attempt_id
            and touched_cof_records.party_id = touched_responsibilities.party_id
            and touched_cof_records.valid_from = touched_responsibilities.valid_from
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
    from responsible_cof_records
    where response = 'FAILURE'
),

first_failures as (
    select distinct on (attempt_id, valid_from) *
    from failures
    order by attempt_id asc, valid_from asc, failed_at asc, tmad_step_no asc, tie_key collate "C" asc
),

first_commissioning_passes as (
    {#- if there are several COMMISSIONING PASS events, the earliest counts -#}
    select
        attempt_id,
        valid_from,
        min(event_ts) as passed_at
    from touched_events
    where stage = 'COMMISSIONING' and outcome = 'PASS'
    group by attempt_id, valid_from
),

party_success_cofs as (
    {#- a party's COF for the attempt: its SUCCESS record with the lowest counter -#}
    select distinct on (attempt_id, valid_from, party_id)
        attempt_id,
        valid_from,
        party_id,
        cof_file_name,
        generated_at
    from responsible_cof_records
    where response = 'SUCCESS'
    order by
        attempt_id asc, valid_from asc, party_id asc, cof_counter asc, cof_file_name collate "C" asc
),

attempt_parties as (
    select
        touched_responsibilities.*,
        party_success_cofs.cof_file_name as success_cof_file_name,
        party_success_cofs.generated_at as success_cof_generated_at
    from touched_responsibilities
    left join party_success_cofs
        on
            touched_responsibilities.attempt_id = party_success_cofs.attempt_id
            and touched_responsibilities.party_id = party_success_cofs.party_id
            and touched_responsibilities.valid_from = party_success_cofs.valid_from
),

successes as (
    {#- s: the moment the last condition of a Success came true (failures aside) -#}
    select
        attempt_parties.attempt_id,
        attempt_parties.valid_from,
        greatest(
            min(first_commissioning_passes.passed_at), max(attempt_parties.success_cof_generated_at)
        ) as succeeded_at
    from attempt_parties
    inner join first_commissioning_passes
        on
            attempt_parties.attempt_id = first_commissioning_passes.attempt_id
            and attempt_parties.valid_from = first_commissioning_passes.valid_from
    group by attempt_parties.attempt_id, attempt_parties.valid_from
    having count(*) = count(attempt_parties.success_cof_file_name)
),

candidate_outcomes as (
    {#- the completion as at the end of drop date valid_from: a Failure at f when its
        report date is on or before that of s (or there is no s), else a Success at s -#}
    select
        coalesce(first_failures.attempt_id, successes.attempt_id) as attempt_id,
        coalesce(first_failures.valid_from, successes.valid_from) as valid_from,
        case
            when
                first_failures.failed_at is not null
                and (
                    successes.succeeded_at is null
                    or {{ local_date('first_failures.failed_at') }} <= {{ local_date('successes.succeeded_at') }}
                )
                then 'Failure'
            else 'Success'
        end as completion_status,
        first_failures.failed_at,
        first_failures.reason_code,
        first_failures.failed_stage,
        first_failures.tmad_step_no,
        successes.succeeded_at
    from first_failures
    full join successes
        on
            first_failures.attempt_id = successes.attempt_id
            and first_failures.valid_from = successes.valid_from
),

outcomes as (
    {#- completion is final: the first drop date on which the attempt is complete fixes
        it for good; an attempt completed before this run's increment is kept as it was -#}
    select distinct on (attempt_id)
        attempt_id,
        valid_from,
        completion_status,
        case when completion_status = 'Failure' then failed_at else succeeded_at end as completed_at,
        case when completion_status = 'Failure' then reason_code end as completion_reason_code,
        case when completion_status = 'Failure' then failed_stage end as failed_stage,
        case when completion_status = 'Failure' then tmad_step_no end as tmad_step_no
    from candidate_outcomes
    {#- judged only once the attempt itself is known (from its own drop on) #}
    where
        exists (
            select 1 from touched_responsibilities as known
            where
                known.attempt_id = candidate_outcomes.attempt_id
                and known.valid_from = candidate_outcomes.valid_from
        )
        {%- if is_incremental() %}
            {#- looked up by key: a join would read every completion ever made #}
            and not exists (
                select 1 from {{ this }} as kept
                where
                    kept.attempt_id = candidate_outcomes.attempt_id
                    and {{ among_history_keys(
                        'kept.attempt_id', 'select candidate.attempt_id from candidate_outcomes as candidate'
                    ) }}
            )
        {%- endif %}
    order by attempt_id asc, valid_from asc
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
    {#- final: a completion is never superseded (kept as a column so that readers as at
        end of D select the same way as from the other versions models) -#}
    null::date as valid_to
from attempt_parties
inner join outcomes
    on
        attempt_parties.attempt_id = outcomes.attempt_id
        and attempt_parties.valid_from = outcomes.valid_from
