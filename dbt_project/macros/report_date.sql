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
