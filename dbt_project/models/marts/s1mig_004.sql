{#- S1MIG-004 Capacity and Demand: one row per party with a capacity allocation for
    migration_date = the report date (its latest allocated_at before the end of D), with
    the attempts it has scheduled for D. -#}
with allocations as (
    select * from {{ ref('stg_dcc__capacity_allocations') }}
    where
        migration_date = {{ report_date() }}
        and allocated_at < {{ report_day_end() }}
),

attempts as (
    select * from {{ ref('stg_dcc__migration_attempts') }}
    where
        scheduled_for = {{ report_date() }}
        and scheduled_at < {{ report_day_end() }}
),

latest_allocations as (
    select distinct on (party_id)
        party_id,
        demand,
        allocation
    from allocations
    order by party_id asc, allocated_at desc, _drop_date desc, _row_number desc
),

scheduled as (
    -- one per attempt requested by the party, not per responsible party
    select
        party_id,
        count(*) as scheduled
    from attempts
    group by party_id
)

select
    {{ report_date() }} as report_date,
    latest_allocations.party_id,
    latest_allocations.demand,
    latest_allocations.allocation,
    coalesce(scheduled.scheduled, 0) as scheduled,
    {{ pct('coalesce(scheduled.scheduled, 0)', 'latest_allocations.allocation') }} as utilisation_pct,
    {{ yn('latest_allocations.allocation >= least(latest_allocations.demand, ' ~ dmin() ~ ')') }} as dmin_met
from latest_allocations
left join scheduled on latest_allocations.party_id = scheduled.party_id
