{#- S1MIG-010 Cohort Migration Progress: one row per (cohort, group_id, party) over the
    installations with eligible_from <= the report date, each counted for every party
    responsible for it as at the end of D (cohort, group_id and eligible_from from the
    version as at end of D). Each installation falls in exactly one category, first
    match wins: migrated > excluded > awaiting_outcome > failed_outstanding >
    not_yet_attempted (installation-level state from int_installation_status_eod). The
    counts per category are kept by int_cohort_progress_eod (by the day's changes). -#}
with counts as (
    select * from {{ ref('int_cohort_progress_eod') }}
    where eligible_from <= {{ report_date() }}
),

progress as (
    select
        cohort,
        group_id,
        party_id,
        sum(installations)::bigint as eligible_installations,
        coalesce(sum(installations) filter (where category = 'migrated'), 0)::bigint as migrated,
        coalesce(sum(installations) filter (where category = 'excluded'), 0)::bigint as excluded,
        coalesce(sum(installations) filter (where category = 'awaiting_outcome'), 0)::bigint as awaiting_outcome,
        coalesce(sum(installations) filter (where category = 'failed_outstanding'), 0)::bigint as failed_outstanding,
        coalesce(sum(installations) filter (where category = 'not_yet_attempted'), 0)::bigint as not_yet_attempted
    from counts
    group by cohort, group_id, party_id
)

select
    {{ report_date() }} as report_date,
    cohort,
    group_id,
    party_id,
    eligible_installations,
    migrated,
    excluded,
    awaiting_outcome,
    failed_outstanding,
    not_yet_attempted,
    {{ pct('migrated', 'eligible_installations') }} as pct_migrated
from progress
