{#- S1MIG-010 Cohort Migration Progress: one row per (cohort, group_id, party) over the
    installations with eligible_from <= the report date, each counted for every party
    responsible for it as at the end of D (cohort, group_id and eligible_from from the
    version as at end of D). Each installation falls in exactly one category, first
    match wins: migrated > excluded > awaiting_outcome > failed_outstanding >
    not_yet_attempted (installation-level state from int_installation_status_eod). -#}
with responsibilities as (
    select * from {{ ref('int_installation_responsibilities_eod') }}
    where eligible_from <= {{ report_date() }}
),

states as (
    select * from {{ ref('int_installation_status_eod') }}
),

categorised as (
    select
        responsibilities.cohort,
        responsibilities.group_id,
        responsibilities.party_id,
        case
            when states.has_success then 'migrated'
            when states.exclusion_category is not null then 'excluded'
            when states.has_awaiting_outcome then 'awaiting_outcome'
            when states.failed_attempts > 0 then 'failed_outstanding'
            else 'not_yet_attempted'
        end as category
    from responsibilities
    left join states on responsibilities.installation_id = states.installation_id
),

progress as (
    select
        cohort,
        group_id,
        party_id,
        count(*) as eligible_installations,
        count(*) filter (where category = 'migrated') as migrated,
        count(*) filter (where category = 'excluded') as excluded,
        count(*) filter (where category = 'awaiting_outcome') as awaiting_outcome,
        count(*) filter (where category = 'failed_outstanding') as failed_outstanding,
        count(*) filter (where category = 'not_yet_attempted') as not_yet_attempted
    from categorised
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
