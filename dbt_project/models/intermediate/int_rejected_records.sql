{#- Grain: one row per landed record that cannot be reported: a value-level reject
    (stg_dcc__rejects: bad values, over-long fields, DA outside cohort MOC) or a valid
    record that breaks a referential rule (spec section 6, v1.1), every rule it breaks in
    its reason:
    - an attempt has an installation version at scheduled_at, and its (ma_file_name,
      ma_record_no) is an ACCEPTED MA record of the same installation and party (retries
      may share one MA record);
    - an event or COF record belongs to a known attempt;
    - every party id a record names is in parties with effective_from <= the record's
      time: MA records (party_id, received_at), attempts (party_id, scheduled_at), COF
      records (party_id, generated_at), capacity allocations (party_id, allocated_at),
      installation versions (elec_supplier_id, gas_supplier_id, effective_from).
    Nothing is dropped silently: the gate (L1) blocks every report date whose drops hold
    any of these, naming drop, file, line and reason.

    A history model (macros/materializations/delivery_history.sql): a run checks the records of the
    drops from its rebuild-from date on. A reference resolves only against records landed
    in the same drop or an earlier one, so a full rebuild finds what the daily runs found:
    a later drop never resolves a reject (an event delivered a day before its attempt, an
    MA record delivered after its attempt); a party created later does not exist at the
    record's time. The remedy is a corrected delivery of the drop holding the reject
    (docs/landing.md). Every lookup is by index (the history's key) or against parties
    (a few dozen rows), for the records of the run's drops only. -#}
{{ config(
    materialized='delivery_history',
    indexes=[{'columns': ['_drop_date']}],
) }}

with value_rejects as (
    select * from {{ ref('stg_dcc__rejects') }}
    where {{ in_history_increment('_drop_date') }}
),

attempts as not materialized (
    select * from {{ ref('stg_dcc__migration_attempts') }}
),

installations as not materialized (
    select * from {{ ref('stg_dcc__installations') }}
),

ma_records as not materialized (
    select * from {{ ref('stg_dcc__migration_authorisations') }}
),

events as not materialized (
    select * from {{ ref('stg_dcc__migration_events') }}
),

cof_records as not materialized (
    select * from {{ ref('stg_dcc__cof_records') }}
),

capacity_allocations as not materialized (
    select * from {{ ref('stg_dcc__capacity_allocations') }}
),

-- A party exists at time t when it has a version with effective_from <= t: its first
-- version's effective_from <= t.
party_since as (
    select
        party_id,
        min(effective_from) as first_effective_from
    from {{ ref('stg_dcc__parties') }}
    group by party_id
),

installations_checked as (
    select
        'installations' as extract_name,
        installations._drop_date,
        installations._row_number,
        concat_ws(
            '; ',
            {{ party_missing('installations.elec_supplier_id', 'elec', 'installations.effective_from',
                             'effective_from') }},
            {{ party_missing('installations.gas_supplier_id', 'gas', 'installations.effective_from',
                             'effective_from') }}
        ) as reject_reason
    from installations
    left join party_since as elec on installations.elec_supplier_id = elec.party_id
    left join party_since as gas on installations.gas_supplier_id = gas.party_id
    where {{ in_history_increment('installations._drop_date') }}
),

ma_records_checked as (
    select
        'migration_authorisations' as extract_name,
        ma_records._drop_date,
        ma_records._row_number,
        {{ party_missing('ma_records.party_id', 'requester', 'ma_records.received_at',
                         'received_at') }} as reject_reason
    from ma_records
    left join party_since as requester on ma_records.party_id = requester.party_id
    where {{ in_history_increment('ma_records._drop_date') }}
),

attempts_checked as (
    select
        'migration_attempts' as extract_name,
        attempts._drop_date,
        attempts._row_number,
        concat_ws(
            '; ',
            case
                when installation_version.installation_id is null
                    then
                        'installation ' || attempts.installation_id || ' has no version at scheduled_at '
                        || {{ iso_utc('attempts.scheduled_at') }}
            end,
            'MA record ' || attempts.ma_file_name || ' #' || attempts.ma_record_no
            || case
                when authorisation.ma_status is null then ' is not a valid MA record landed up to this drop'
                when authorisation.ma_status <> 'ACCEPTED' then ' is ' || authorisation.ma_status
                when authorisation.installation_id <> attempts.installation_id
                    then ' is for installation ' || authorisation.installation_id
                when authorisation.party_id <> attempts.party_id then ' is from party ' || authorisation.party_id
            end
            || ' (an attempt needs an ACCEPTED MA record of its installation and party)',
            {{ party_missing('attempts.party_id', 'requester', 'attempts.scheduled_at', 'scheduled_at') }}
        ) as reject_reason
    -- the run's attempts in installation order: their version lookups below then walk the
    -- installations' index and heap (a national base, in installation order) forwards
    -- instead of at random; a national day's 200,000 lookups, cold: 22-23 s at random, 9 s
    -- in order (docs/performance.md item 26)
    from (
        select * from attempts
        where {{ in_history_increment('attempts._drop_date') }}
        order by installation_id
    ) as attempts
    -- one index lookup per attempt of the run: a LATERAL fenced with offset 0 is never
    -- flattened into a join that reads the whole history (at most one row matches: versions
    -- do not overlap, an MA record's key is its grain)
    left join lateral (
        select installations.installation_id
        from installations
        where
            installations.installation_id = attempts.installation_id
            and installations.valid_from <= attempts.scheduled_at
            and (installations.valid_to is null or attempts.scheduled_at < installations.valid_to)
        offset 0  -- noqa: AM09
    ) as installation_version on true
    left join lateral (
        select
            ma_records.ma_status,
            ma_records.installation_id,
            ma_records.party_id
        from ma_records
        where
            ma_records.ma_file_name = attempts.ma_file_name
            and ma_records.ma_record_no = attempts.ma_record_no
            and ma_records._drop_date <= attempts._drop_date
        offset 0  -- noqa: AM09
    ) as authorisation on true
    left join party_since as requester on attempts.party_id = requester.party_id
),

events_checked as (
    select
        'migration_events' as extract_name,
        events._drop_date,
        events._row_number,
        'attempt_id ' || events.attempt_id || ' is not a known attempt' as reject_reason
    from events
    where
        {{ in_history_increment('events._drop_date') }}
        and not exists (
            {#- the attempts of the run's events by key: a join would read every attempt ever
                delivered (a national day: 0.75 s against 1.3 s on two cores, day 26) #}
            select 1 from attempts
            where
                attempts.attempt_id = events.attempt_id
                and attempts._drop_date <= events._drop_date
                and {{ among_history_keys(
                    'attempts.attempt_id',
                    'select run_events.attempt_id from events as run_events where '
                    ~ in_history_increment('run_events._drop_date')
                ) }}
        )
),

cof_records_checked as (
    select
        'cof_records' as extract_name,
        cof_records._drop_date,
        cof_records._row_number,
        concat_ws(
            '; ',
            case
                when known_attempt.attempt_id is null
                    then 'attempt_id ' || cof_records.attempt_id || ' is not a known attempt'
            end,
            {{ party_missing('cof_records.party_id', 'addressee', 'cof_records.generated_at', 'generated_at') }}
        ) as reject_reason
    from cof_records
    left join lateral (
        select attempts.attempt_id
        from attempts
        where
            attempts.attempt_id = cof_records.attempt_id
            and attempts._drop_date <= cof_records._drop_date
        offset 0  -- noqa: AM09
    ) as known_attempt on true
    left join party_since as addressee on cof_records.party_id = addressee.party_id
    where {{ in_history_increment('cof_records._drop_date') }}
),

capacity_allocations_checked as (
    select
        'capacity_allocations' as extract_name,
        capacity_allocations._drop_date,
        capacity_allocations._row_number,
        {{ party_missing('capacity_allocations.party_id', 'allocated', 'capacity_allocations.allocated_at',
                       'allocated_at') }} as reject_reason
    from capacity_allocations
    left join party_since as allocated on capacity_allocations.party_id = allocated.party_id
    where {{ in_history_increment('capacity_allocations._drop_date') }}
),

unresolved as (
    select * from installations_checked
    union all
    select * from ma_records_checked
    union all
    select * from attempts_checked
    union all
    select * from events_checked
    union all
    select * from cof_records_checked
    union all
    select * from capacity_allocations_checked
)

select
    extract_name,
    _drop_date,
    _file_name,
    _row_number,
    _row_number + 1 as line_no,
    reject_reason
from value_rejects

union all

select
    extract_name,
    _drop_date,
    {{ delivered_file('unresolved.extract_name', 'unresolved._drop_date') }} as _file_name,
    _row_number,
    _row_number + 1 as line_no,
    reject_reason
from unresolved
where reject_reason <> ''
