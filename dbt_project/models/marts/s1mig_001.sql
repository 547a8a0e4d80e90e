{#- S1MIG-001 Successfully Migrated Installations: one row per attempt x responsible
    party completed with Success on the report date. Same source as 006's Success rows. -#}
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
    scheduled_for as migration_date,
    completed_at,
    success_cof_file_name as cof_file_name
from completions
where
    completion_status = 'Success'
    and completed_on = {{ report_date() }}
