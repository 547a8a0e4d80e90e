{#- Grain: one row per installation per party responsible for it as at the end of the
    report date (spec section 3, used by S1MIG-008 and S1MIG-010). The version as at end
    of D is the one with the latest effective_from strictly before the end of D; cohort,
    group_id and eligible_from come from it too. Every installation with such a version
    has at least one row.
    A report state (macros/materializations/report_state.sql): a run recomputes only the
    installations with a version delivered between the date last built and D (their
    migration state does not change who is responsible for them); the other rows are as
    at the end of D already.
    Its index holds, after the key, every column S1MIG-008 and int_cohort_progress_eod
    read, so both read it alone (index-only scans) instead of a heap page for every row
    (docs/performance.md); the build's end sets the visibility map those scans need
    (s1mig.dbt.INDEX_ONLY_STATES). -#}
{{ config(
    materialized='report_state',
    state_key='installation_id',
    state_changes=installation_version_changes(),
    grain=['installation_id', 'party_id'],
    indexes=[{'columns': ['installation_id', 'party_id', 'fuel', 'cohort', 'group_id', 'eligible_from']}],
) }}

with installations as (
    select * from {{ ref('stg_dcc__installations') }}
    where
        effective_from < {{ report_day_end() }}
        and {{ among_state_changes('installation_id') }}
),

versions_at_end as (
    select distinct on (installation_id)
        installation_id,
        cohort,
        group_id,
        mpan,
        mprn,
        elec_supplier_id,
        gas_supplier_id,
        eligible_from,
        effective_from
    from installations
    order by installation_id asc, effective_from desc, _drop_date desc, _row_number desc
),

responsibilities as (
    {{ responsible_parties(
        'versions_at_end',
        ['installation_id', 'cohort', 'group_id', 'eligible_from', 'effective_from']
    ) }}
)

select
    installation_id,
    party_id,
    fuel,
    mpan,
    mprn,
    cohort,
    group_id,
    eligible_from,
    effective_from
from responsibilities
