{#- S1MIG-006 Migration Completion Status: one row per attempt x responsible party
    completed (Success or Failure, never 'In Progress') on the report date. -#}
with completions as (
    select * from {{ ref('int_attempt_completions') }}
)

select
    {{ report_date() }} as report_date,
    party_id,
    installation_id,
    attempt_no,
    fuel,
    mpan,
    mprn,
    cohort,
    group_id,
    completion_status,
    completion_reason_code,
    completed_at
from completions
where completed_on = {{ report_date() }}
