{#- Public: for BI, whether the marts of each report date are what its parties were sent.
    Grain: report_date (every date a report mart was built for). The marts of D hold D's
    rows from their latest build; the gate, the export and a release of D that came after
    that build (by a run that gated it) say whether those rows were reconciled and
    released. Read from the warehouse's own audit log (audit.mart_builds, gate_results,
    releases: sources, as these are not raw extracts no staging model types them) and the
    drop ledger (docs/decisions.md, "Which report dates are released, for BI"). -#}
{%- set report_marts = report_marts() %}

with mart_builds as (
    select * from {{ source('audit', 'mart_builds') }}
    where model_name in (
        {%- for mart in report_marts %}
            '{{ mart }}'{{ "," if not loop.last }}
        {%- endfor %}
    )
),

gate_results as (
    select * from {{ source('audit', 'gate_results') }}
),

releases as (
    select * from {{ source('audit', 'releases') }}
),

-- each mart's latest build for each date: the rows the mart holds for it
latest_builds as (
    select distinct on (report_date, model_name)
        report_date,
        model_name,
        built_at,
        landed_through
    from mart_builds
    order by report_date asc, model_name asc, built_at desc
),

builds as (
    select
        report_date,
        count(*) as marts_built,
        max(built_at) as built_at,
        -- every report mart built, each after the latest ledger event up to D (rule R0)
        count(*) = {{ report_marts | length }}
        and bool_and(
            landed_through is not distinct from {{ landed_through('latest_builds.report_date') }}
        ) as up_to_date
    from latest_builds
    group by report_date
),

-- the runs that gated D after its latest build: every rule of the run checked after it,
-- and the gate's own rules among them (R9 alone is the export's check: a gate task that
-- recorded nothing did not reconcile anything)
gate_runs as (
    select
        gate_results.report_date,
        gate_results.run_id,
        max(gate_results.checked_at) as gated_at,
        not bool_or(gate_results.status = 'fail') as gate_passed
    from gate_results
    inner join builds on gate_results.report_date = builds.report_date
    group by gate_results.report_date, gate_results.run_id, builds.built_at
    having
        min(gate_results.checked_at) > builds.built_at
        and bool_or(gate_results.rule_id <> 'R9')
),

latest_gates as (
    select distinct on (report_date)
        report_date,
        run_id,
        gated_at,
        gate_passed
    from gate_runs
    order by report_date asc, gated_at desc, run_id asc
),

-- decisions on an export of the latest build: by a run whose gate of it passed; a release
-- stands over a later rejection of another export of the same rows
decisions as (
    select distinct on (releases.report_date)
        releases.report_date,
        releases.run_id,
        releases.outcome,
        releases.decided_by,
        releases.decided_at,
        releases.revision
    from releases
    inner join builds on releases.report_date = builds.report_date
    inner join gate_runs
        on
            releases.report_date = gate_runs.report_date
            and releases.run_id = gate_runs.run_id
            and gate_runs.gate_passed
    where releases.recorded_at > builds.built_at
    order by
        releases.report_date asc,
        releases.outcome in ('released', 'auto-released') desc,
        releases.recorded_at desc,
        releases.release_id desc
),

-- every export folder's latest release of D, whatever the build: D is released only when
-- each folder that was sent D holds this build (a check copy of a later build sent to
-- another folder does not make the parties' folder current)
folders_behind as (
    select latest.report_date
    from (
        select distinct on (releases.report_date, coalesce(releases.out_folder, ''))
            releases.report_date,
            releases.run_id,
            releases.recorded_at
        from releases
        where releases.outcome in ('released', 'auto-released')
        order by
            releases.report_date asc,
            coalesce(releases.out_folder, '') asc,
            releases.recorded_at desc,
            releases.release_id desc
    ) as latest
    inner join builds on latest.report_date = builds.report_date
    left join gate_runs
        on
            latest.report_date = gate_runs.report_date
            and latest.run_id = gate_runs.run_id
            and gate_runs.gate_passed
    where latest.recorded_at <= builds.built_at or gate_runs.run_id is null
    group by latest.report_date
),

released_dates as (
    select decisions.report_date
    from decisions
    left join folders_behind on decisions.report_date = folders_behind.report_date
    where decisions.outcome in ('released', 'auto-released') and folders_behind.report_date is null
)

select
    builds.report_date,
    case
        when released_dates.report_date is not null then 'released'
        when latest_gates.run_id is null then 'built'
        when not latest_gates.gate_passed then 'blocked'
        when decisions.outcome = 'rejected' and decisions.run_id = latest_gates.run_id then 'rejected'
        else 'passed'
    end as state,
    released_dates.report_date is not null as released,
    builds.up_to_date,
    builds.marts_built::integer as marts_built,
    builds.built_at,
    latest_gates.run_id as gate_run_id,
    latest_gates.gated_at,
    latest_gates.gate_passed,
    decisions.run_id as release_run_id,
    decisions.outcome as release_outcome,
    decisions.decided_by,
    decisions.decided_at,
    decisions.revision as release_revision
from builds
left join latest_gates on builds.report_date = latest_gates.report_date
left join decisions on builds.report_date = decisions.report_date
left join released_dates on builds.report_date = released_dates.report_date
