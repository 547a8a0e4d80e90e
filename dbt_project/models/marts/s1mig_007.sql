{#- S1MIG-007 Failure Analysis: the S1MIG-006 Failure rows of the report date counted by
    (party, cohort, group_id, failed_stage, tmad_step_no, reason_code); stage, step and
    reason are those of the attempt's earliest failure (THE completion rule). -#}
with completions as (
    select * from {{ ref('int_attempt_completions') }}
    where
        completion_status = 'Failure'
        and completed_on = {{ report_date() }}
),

reason_codes as (
    select * from {{ ref('reason_codes') }}
),

failures as (
    select
        party_id,
        cohort,
        group_id,
        failed_stage,
        tmad_step_no,
        completion_reason_code as reason_code,
        count(*) as failures
    from completions
    group by party_id, cohort, group_id, failed_stage, tmad_step_no, completion_reason_code
)

select
    {{ report_date() }} as report_date,
    failures.party_id,
    failures.cohort,
    failures.group_id,
    failures.failed_stage,
    failures.tmad_step_no,
    failures.reason_code,
    reason_codes.reason_description,
    failures.failures
from failures
left join reason_codes on failures.reason_code = reason_codes.reason_code
