{#- Shared expressions of the S1MIG report marts (spec section 5). -#}

{#- DMIN: the Migration Scaling Methodology's flat minimum daily allocation (spec section 1;
    var dmin, whose source is contract.DMIN). -#}
{% macro dmin() -%}
    {{ var('dmin') }}
{%- endmacro %}

{#- True when timestamptz `ts` falls in local day D (Europe/London, spec section 3). -#}
{% macro in_report_day(ts) -%}
    ({{ ts }} >= {{ report_day_start() }} and {{ ts }} < {{ report_day_end() }})
{%- endmacro %}

{#- A spec "pct" column: numerator x 100 / denominator as numeric with exactly two
    decimals, rounded half away from zero (round() on numeric does that: 0.125 -> 0.13),
    NULL when the denominator is 0. Integer inputs make the quotient exact or
    non-terminating, so it can never sit within round()'s error of a half-way point. -#}
{% macro pct(numerator, denominator) -%}
    (case
        when ({{ denominator }}) <> 0
            then round(({{ numerator }})::numeric * 100 / ({{ denominator }}), 2)
    end)::numeric(9, 2)
{%- endmacro %}

{#- A spec flag: 'Y' when the condition is true, else 'N' (NULL counts as not met). -#}
{% macro yn(condition) -%}
    (case when {{ condition }} then 'Y' else 'N' end)
{%- endmacro %}

{#- The responsible parties of installation versions (spec section 3): one DUAL row when
    the electricity and gas supplier are the same party, otherwise one ELEC row (MPAN
    only) and/or one GAS row (MPRN only), so a party never sees another party's MPxN.
    A supplier counts only for a fuel the version has (elec with an MPAN, gas with an
    MPRN). `relation` must have mpan, mprn, elec_supplier_id and gas_supplier_id;
    `columns` are carried through to every row. Yields `columns`, party_id, fuel, mpan,
    mprn. -#}
{% macro responsible_parties(relation, columns) -%}
    with supplied as (
        select
            {{ columns | join(', ') }},
            mpan,
            mprn,
            case when mpan is not null then elec_supplier_id end as elec_party_id,
            case when mprn is not null then gas_supplier_id end as gas_party_id
        from {{ relation }}
    )

    select
        {{ columns | join(', ') }},
        elec_party_id as party_id,
        'DUAL' as fuel,
        mpan,
        mprn
    from supplied
    where elec_party_id = gas_party_id

    union all

    select
        {{ columns | join(', ') }},
        elec_party_id as party_id,
        'ELEC' as fuel,
        mpan,
        null as mprn
    from supplied
    where elec_party_id is not null and elec_party_id is distinct from gas_party_id

    union all

    select
        {{ columns | join(', ') }},
        gas_party_id as party_id,
        'GAS' as fuel,
        null as mpan,
        mprn
    from supplied
    where gas_party_id is not null and gas_party_id is distinct from elec_party_id
{%- endmacro %}

{#- After this many failed attempts an installation is excluded from migration
    (FIVE_FAILED_ATTEMPTS, spec sections 1 and 5; var max_failed_attempts, whose source is
    contract.MAX_FAILED_ATTEMPTS). -#}
{% macro max_failed_attempts() -%}
    {{ var('max_failed_attempts') }}
{%- endmacro %}

{#- The S1MIG-010 category of an installation from its state as at end of D (`states`: a
    relation of int_installation_status_eod's columns; no row = not yet attempted). First
    match wins: migrated > excluded > awaiting_outcome > failed_outstanding >
    not_yet_attempted. -#}
{% macro progress_category(states) -%}
    case
        when {{ states }}.has_success then 'migrated'
        when {{ states }}.exclusion_category is not null then 'excluded'
        when {{ states }}.has_awaiting_outcome then 'awaiting_outcome'
        when {{ states }}.failed_attempts > 0 then 'failed_outstanding'
        else 'not_yet_attempted'
    end
{%- endmacro %}
