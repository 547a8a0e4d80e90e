{#- S1MIG-005 Daily Migration Progress: one row per (party, cohort) with any non-zero
    count on the report date. Attempts are counted per responsible party (attempt x
    party), cohort from the installation version at scheduled_at; succeeded / failed are
    the S1MIG-001 rows / S1MIG-006 Failure rows of D, the cumulative columns every such
    completion known at the end of D (THE completion rule: int_attempt_completions). -#}
with responsibilities as (
    select * from {{ ref('int_attempt_responsibilities') }}
),

completions as (
    select * from {{ ref('int_attempt_completions') }}
    where completed_on <= {{ report_date() }}
),

counted as (
    select
        party_id,
        cohort,
        1 as scheduled,
        0 as succeeded,
        0 as failed,
        0 as cumulative_succeeded,
        0 as cumulative_failed
    from responsibilities
    where scheduled_for = {{ report_date() }} and scheduled_at < {{ report_day_end() }}

    union all

    select
        party_id,
        cohort,
        0 as scheduled,
        case when completion_status = 'Success' and completed_on = {{ report_date() }} then 1 else 0 end
            as succeeded,
        case when completion_status = 'Failure' and completed_on = {{ report_date() }} then 1 else 0 end
            as failed,
        case when completion_status = 'Success' then 1 else 0 end as cumulative_succeeded,
        case when completion_status = 'Failure' then 1 else 0 end as cumulative_failed
    from completions
),

progress as (
    select
        party_id,
        cohort,
        sum(scheduled) as scheduled,
        sum(succeeded) as succeeded,
        sum(failed) as failed,
        sum(cumulative_succeeded) as cumulative_succeeded,
        sum(cumulative_failed) as cumulative_failed
    from counted
    group by party_id, cohort
)

select
    {{ report_date() }} as report_date,
    party_id,
    cohort,
    scheduled,
    succeeded,
    failed,
    {{ pct('succeeded', 'succeeded + failed') }} as success_rate_pct,
    cumulative_succeeded,
    cumulative_failed
from progress
where scheduled + succeeded + failed + cumulative_succeeded + cumulative_failed > 0
