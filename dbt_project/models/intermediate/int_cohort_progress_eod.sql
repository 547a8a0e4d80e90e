{#- Grain: one row per (cohort, group_id, party_id, eligible_from, category): how many
    installations each party is responsible for as at the end of the report date fall in
    each S1MIG-010 category, by the cohort, group_id and eligible_from of their version
    as at end of D (int_installation_responsibilities_eod). Each installation falls in
    exactly one category, first match wins: migrated > excluded > awaiting_outcome >
    failed_outstanding > not_yet_attempted (installation-level state from
    int_installation_status_eod). S1MIG-010 adds up the rows with eligible_from <= D.

    A report state kept by delta (macros/materializations/report_state.sql): a run that
    moves the two installation states from the date last built takes the counts held,
    counts out what the installations whose state moved counted before and counts in
    what they count now; otherwise it counts every installation. The installations
    moved are the migration state's (its `__changes`); the responsibilities moved only
    those of them with a new installation version (installation_version_changes), so the
    rows counted out are the responsibilities' replaced rows and, for the others, their
    rows as they are. -#}
{{ config(
    materialized='report_state',
    delta_of=['int_installation_responsibilities_eod', 'int_installation_status_eod'],
) }}
{#- the responsibilities' columns the counts need: their index holds them (an index-only
    scan, no heap page per installation) -#}
{%- set counted_by = ['installation_id', 'party_id', 'cohort', 'group_id', 'eligible_from'] %}

with responsibilities as (
    select
        {{ counted_by | join(',\n        ') }}
    from {{ ref('int_installation_responsibilities_eod') }}
    where {{ among_state_changes('installation_id', ref('int_installation_status_eod')) }}
),

states as (
    {#- moved: the moved installations' states as the status state wrote them this run -#}
    {%- set status_state = ref('int_installation_status_eod') %}
    select * from {{ moved_state(status_state) if report_state_incremental() else status_state }}
),

counted as (
    select
        responsibilities.cohort,
        responsibilities.group_id,
        responsibilities.party_id,
        responsibilities.eligible_from,
        {{ progress_category('states') }} as category,
        1 as installations
    from responsibilities
    left join states on responsibilities.installation_id = states.installation_id
    {%- if report_state_incremental() %}

        union all

        select
            replaced_responsibilities.cohort,
            replaced_responsibilities.group_id,
            replaced_responsibilities.party_id,
            replaced_responsibilities.eligible_from,
            {{ progress_category('replaced_states') }} as category,
            -1 as installations
        from (
            select
                {{ counted_by | join(',\n                ') }}
            from {{ replaced_state(ref('int_installation_responsibilities_eod')) }}
            union all
            select * from responsibilities
            where not exists (
                select from {{ state_change_keys(ref('int_installation_responsibilities_eod')) }} as moved
                where moved.installation_id = responsibilities.installation_id
            )
        ) as replaced_responsibilities
        left join {{ replaced_state(ref('int_installation_status_eod')) }} as replaced_states
            on replaced_responsibilities.installation_id = replaced_states.installation_id

        union all

        select
            held.cohort,
            held.group_id,
            held.party_id,
            held.eligible_from,
            held.category,
            held.installations
        from {{ this }} as held
    {%- endif %}
)

select
    cohort,
    group_id,
    party_id,
    eligible_from,
    category,
    sum(installations)::bigint as installations
from counted
group by cohort, group_id, party_id, eligible_from, category
having sum(installations) <> 0
