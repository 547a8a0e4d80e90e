{#- Grain: one row per migration attempt per responsible party (spec section 3).
    Responsibility is fixed at scheduled_at by the installation version in force then:
    one DUAL row when the electricity and gas suppliers are the same party, otherwise
    one ELEC row (MPAN only) and/or one GAS row (MPRN only), so a party never sees
    another party's MPxN.
    A history model (macros/materializations/delivery_history.sql): every landed attempt, whatever the
    report date; a reader as at end of D takes scheduled_at before the end of D. A run
    computes the attempts of the drops from its rebuild-from date on (an installation
    version lies in the drop of its effective_from, so a drop cannot change the
    responsibility of an attempt scheduled before it). -#}
{{ config(
    materialized='delivery_history',
    grain=['attempt_id', 'party_id'],
    indexes=[{'columns': ['attempt_id']}, {'columns': ['_drop_date']}],
) }}

with attempts as (
    select * from {{ ref('stg_dcc__migration_attempts') }}
    where {{ in_history_increment('_drop_date') }}
),

installations as (
    {#- the versions of the run's attempts' installations, looked up by key: the whole
        population read would cost the same whatever the day's size -#}
    select * from {{ ref('stg_dcc__installations') }}
    where {{ among_history_keys('installation_id', 'select attempted.installation_id from attempts as attempted') }}
),

attempt_installation as (
    select
        attempts.attempt_id,
        attempts.installation_id,
        attempts.attempt_no,
        attempts.party_id as requesting_party_id,
        attempts.scheduled_at,
        attempts.scheduled_for,
        attempts._drop_date,
        installations.cohort,
        installations.group_id,
        installations.mpan,
        installations.mprn,
        installations.elec_supplier_id,
        installations.gas_supplier_id
    from attempts
    inner join installations
        on
            attempts.installation_id = installations.installation_id
            and attempts.scheduled_at >= installations.valid_from
            and (installations.valid_to is null or attempts.scheduled_at < installations.valid_to)
),

responsibilities as (
    {{ responsible_parties('attempt_installation', ['attempt_id']) }}
)

select
    attempt_installation.attempt_id,
    attempt_installation.installation_id,
    attempt_installation.attempt_no,
    responsibilities.party_id,
    responsibilities.fuel,
    responsibilities.mpan,
    responsibilities.mprn,
    attempt_installation.cohort,
    attempt_installation.group_id,
    attempt_installation.requesting_party_id,
    attempt_installation.scheduled_at,
    attempt_installation.scheduled_for,
    attempt_installation._drop_date
from attempt_installation
inner join responsibilities
    on attempt_installation.attempt_id = responsibilities.attempt_id
