{#- The report date D as 'YYYY-MM-DD'. The pipeline gives it in the environment
    (S1MIG_REPORT_DATE), read only when dbt executes: dbt's partial parsing then keeps the
    parsed project from one date to the next (a new `--vars` value makes dbt parse the
    whole project again, several seconds a build). `--vars '{report_date: D}'` still works
    and wins (by hand, and the unit tests' overrides). Fails loudly when neither is given,
    rather than silently building some other day. -#}
{% macro report_date_value() -%}
    {%- set d = var('report_date') -%}
    {%- if d is none and execute -%}
        {%- set d = env_var('S1MIG_REPORT_DATE', '') or none -%}
        {%- if d is none -%}
            {{ exceptions.raise_compiler_error(
                "the report date is required: S1MIG_REPORT_DATE=YYYY-MM-DD, or dbt build --vars '{report_date: YYYY-MM-DD}'"
            ) }}
        {%- endif -%}
    {%- endif -%}
    {{- d if d is not none else '1970-01-01' -}}
{%- endmacro %}

{#- The report date D as a SQL date literal. -#}
{% macro report_date() -%}
    date '{{ report_date_value() }}'
{%- endmacro %}

{#- A data test's `where` config is rendered when dbt parses the project, before the date
    is known: it says __report_date__ where it means D, replaced here when the test runs
    (dbt's own get_where_subquery, with that one substitution). -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set where = where | replace('__report_date__', report_date()) -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- Start and end of local day D (var local_tz: Europe/London) as timestamptz: t is in D when
    day_start <= t < day_end. -#}
{% macro report_day_start() -%}
    ({{ report_date() }}::timestamp at time zone '{{ var("local_tz") }}')
{%- endmacro %}

{% macro report_day_end() -%}
    (({{ report_date() }} + 1)::timestamp at time zone '{{ var("local_tz") }}')
{%- endmacro %}

{#- The Europe/London calendar date of a timestamptz. -#}
{% macro local_date(ts) -%}
    ({{ ts }} at time zone '{{ var("local_tz") }}')::date
{%- endmacro %}

{#- Marts are incremental by report date: a run for D deletes D's rows and inserts the
    new ones in the same transaction, so a re-run replaces and history stays. -#}
{% macro replace_report_date() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where report_date = {{ report_date() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The build log of the report marts (audit.mart_builds): one row per mart per build for
    D, with the latest landing of any drop up to D the build could see. Gate rule R0
    reads it: the gate and the export of D never read a date that was not built, or was
    built before a drop up to D was delivered again. Created on run start. -#}
{% macro create_mart_build_log() -%}
    create schema if not exists audit;
    create table if not exists audit.mart_builds (
        model_name text not null,
        report_date date not null,
        built_at timestamptz not null,
        landed_through timestamptz,
        primary key (model_name, report_date, built_at)
    );
{%- endmacro %}

{#- The gate's results and the releases (audit.gate_results, audit.releases), created on
    run start so that public_models.release_status can read them before the first gate and
    release. Python creates them too (s1mig.gate.AUDIT_DDL, s1mig.release.RELEASES_DDL):
    tests/test_contract_sources.py fails when the two differ. -#}
{% macro create_release_log() -%}
    create schema if not exists audit;
    create table if not exists audit.gate_results (
        run_id text not null,
        report_date date not null,
        rule_id text not null,
        rule_name text not null,
        severity text not null,
        status text not null,
        failing_count bigint not null,
        sample_keys text[] not null,
        checked_at timestamptz not null default now(),
        primary key (run_id, report_date, rule_id)
    );
    create table if not exists audit.releases (
        release_id bigint generated always as identity primary key,
        run_id text not null,
        report_date date not null,
        outcome text not null check (outcome in ('released', 'auto-released', 'rejected')),
        decided_by text,
        decided_by_id text,
        decided_at timestamptz,
        why text,
        revision integer,
        out_folder text,
        evidence jsonb,
        recorded_at timestamptz not null default now()
    );
{%- endmacro %}

{#- The ten report marts (models/marts/), as src/s1mig/contract.py REPORTS names them
    (tests/test_contract_sources.py compares the two). -#}
{% macro report_marts() -%}
    {{ return([
        's1mig_001', 's1mig_002', 's1mig_003', 's1mig_004', 's1mig_005',
        's1mig_006', 's1mig_007', 's1mig_008', 's1mig_009', 's1mig_010',
    ]) }}
{%- endmacro %}

{#- Post-hook of every mart, in its transaction: record the build of D. -#}
{% macro record_mart_build() -%}
    insert into audit.mart_builds (model_name, report_date, built_at, landed_through)
    select
        '{{ this.identifier }}',
        {{ report_date() }},
        clock_timestamp(),
        {{ landed_through(report_date()) }}
{%- endmacro %}

{#- The latest ledger event of any drop up to the date `day` (a delivery, a correction or a
    delivery taken back: every ledger row, superseded and undo rows too): a build of day saw
    every drop up to it as delivered now when it recorded this (rule R0 compares it with the
    ledger as it is now). -#}
{% macro landed_through(day) -%}
    (
        select max(landed_at) from raw.drop_ledger
        where drop_date <= {{ day }}
    )
{%- endmacro %}
