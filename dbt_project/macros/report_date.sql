{#- The report date D as a SQL date literal. Fails loudly when not given, rather than
    silently building some other day. -#}
{% macro report_date() -%}
    {%- set d = var('report_date') -%}
    {%- if d is none -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error(
                "var report_date is required: dbt build --vars '{report_date: YYYY-MM-DD}'"
            ) }}
        {%- endif -%}
        {%- set d = '1970-01-01' -%}
    {%- endif -%}
    date '{{ d }}'
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

{#- Post-hook of every mart, in its transaction: record the build of D. -#}
{% macro record_mart_build() -%}
    insert into audit.mart_builds (model_name, report_date, built_at, landed_through)
    select
        '{{ this.identifier }}',
        {{ report_date() }},
        clock_timestamp(),
        (
            select max(landed_at) from raw.drop_ledger
            where drop_date <= {{ report_date() }} and superseded_at is null
        )
{%- endmacro %}
