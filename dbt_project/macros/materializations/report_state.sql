{#- materialized='report_state': a table holding a state "as at the end of the report date"
    (one row per installation and party, per installation, ...) that a run moves from the
    date it was last built for, R, to this run's report date D by recomputing only the
    keys whose state can differ between the end of R and the end of D, instead of the
    whole population (docs/performance.md, docs/decisions.md "Report states").

    A keyed state (config `state_key`, e.g. installation_id) names in `state_changes` the
    inputs whose rows change it, each with its drop date column: the keys of the rows of
    those inputs with a drop date between R and D (after the earlier, up to the later,
    so a date before R restates backwards the same way) are the run's changes. Every
    staged record lies in the drop of its own local day, and a history model's version
    valid_from is the drop that made it, so a key without such a row has the same state
    at the end of R and of D. The model's SQL reads its inputs
    `where {{ among_state_changes('<key>') }}` (every key when built whole).

    A state that is an aggregate of keyed states (config `delta_of`: those models) is
    moved by their delta instead: the rows they replaced this run (`<model>__replaced`)
    counted out, their new rows for the same keys (`<model>__changes`) counted in, on top
    of what it held (its SQL reads `{{ this }}` when `report_state_incremental()`).

    The state is moved only when nothing it was built from changed up to R: the log
    (staging.report_state_log) keeps, per model, R and a fingerprint of the deliveries
    up to R its parents held (macros/deliveries.sql); an aggregate follows only a run of
    its keyed states from its own R with the same deliveries. Anything else (a
    correction or withdrawal of a drop up to R, a first build, a full refresh, a keyed
    state built whole or not built this run) builds it whole: a correction costs what a
    full build costs, as in the history models.

    In one transaction, so a failed build leaves the model (and its log) as it was:
    1. keyed, moved: the run's change keys into `<model>__changes`, the rows they have
       deleted and kept in `<model>__replaced`, the model's rows for the keys written to
       `<model>__rows` and appended (both side tables kept until the next run: an
       aggregate reads them); those rows checked: every key is among the changes and
       `grain` holds (no lookup in the table: the run's keys have no other rows);
       aggregate, moved: the model's rows (held + delta) replace the table's;
       built whole: a new table (configured indexes) swapped in, the side tables dropped;
    2. analyze when stale (macros/increment_checks.sql);
    3. log R = D and the fingerprint. -#}
{% materialization report_state, adapter='postgres' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set grant_config = config.get('grants') -%}
    {%- set moved = report_state_incremental() -%}
    {%- set state_key = config.get('state_key') -%}
    {%- if not state_key and not config.get('delta_of') -%}
        {{ exceptions.raise_compiler_error(
            "report_state model " ~ this.identifier ~ " needs config state_key (with state_changes) or delta_of"
        ) }}
    {%- endif -%}

    {{ drop_delivery_leftovers(existing_relation, target_relation) }}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- set to_drop = [] -%}
    {%- if moved -%}
        {%- do create_missing_indexes(target_relation) -%}
    {%- endif -%}
    {%- if moved and state_key -%}
        {%- do run_in_transaction('report_state_changes', report_state_changes(state_key)) -%}
        {%- do run_in_transaction('main', append_report_state(target_relation, sql)) -%}
        {%- do run_in_transaction('assert_state_rows', assert_report_state_rows(state_key)) -%}
    {%- elif moved -%}
        {%- do run_in_transaction('main', replace_report_state(target_relation, sql)) -%}
    {%- else -%}
        {%- do run_in_transaction('drop_state_side_tables', drop_report_state_side_tables()) -%}
        {%- if existing_relation is none -%}
            {%- do run_in_transaction('main', get_create_table_as_sql(False, target_relation, sql)) -%}
            {%- do create_indexes(target_relation) -%}
        {%- else -%}
            {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
            {%- set backup_relation = make_backup_relation(target_relation, existing_relation.type) -%}
            {%- do run_in_transaction('main', get_create_table_as_sql(False, intermediate_relation, sql)) -%}
            {%- do create_indexes(intermediate_relation) -%}
            {%- do adapter.rename_relation(existing_relation, backup_relation) -%}
            {%- do adapter.rename_relation(intermediate_relation, target_relation) -%}
            {%- do to_drop.append(backup_relation) -%}
        {%- endif -%}
        {%- if config.get('grain') -%}
            {%- do run_in_transaction('assert_state_grain', assert_unique_in_increment(config.get('grain'), 'true')) -%}
        {%- endif -%}
    {%- endif -%}
    {%- do run_in_transaction('analyze_if_stale', analyze_table_if_stale()) -%}
    {%- do run_in_transaction('log_report_state', log_report_state(moved)) -%}

    {{ return(finish_delivery_model(
        target_relation, existing_relation, not moved, grant_config, post_hooks, to_drop
    )) }}
{% endmaterialization %}

-- LT02 cannot place the Jinja tags that interleave these macros' SQL:
-- noqa: disable=LT02
{% macro report_state_log() -%}staging.report_state_log{%- endmacro %}

{#- on-run-start (create_delivery_log): the log's table. -#}
{% macro create_report_state_log() -%}
    create table if not exists {{ report_state_log() }} (
        model_name text primary key,
        report_date date not null,
        deliveries text not null,
        from_date date,
        from_deliveries text,
        built_at timestamptz not null
    )
{%- endmacro %}

{#- A side table of a keyed state (`__changes`: the run's keys, `__replaced`: the rows
    they had before the run). -#}
{% macro report_state_side(relation, suffix) -%}
    {{ return(relation.incorporate(path={'identifier': relation.identifier ~ '__' ~ suffix})) }}
{%- endmacro %}

{#- The fingerprint of the deliveries up to `day_sql` (a SQL date) that this model's parents
    hold: their drop dates and landing times (macros/deliveries.sql). -#}
{% macro deliveries_through(day_sql) -%}
    (
        select
            md5(coalesce(
                string_agg(
                    available.drop_date::text || '@' || extract(epoch from available.landed_at)::text,
                    ',' order by available.drop_date
                ),
                ''
            ))
        from {{ available_deliveries(history_upstream()) }} as available
        where available.drop_date <= {{ day_sql }}
    )
{%- endmacro %}

{#- Whether this run moves the state held from R (true) or builds it whole (false); looked
    up when the model's SQL is rendered and again by the materialization (only the
    model's own last step writes its log row in between). -#}
{% macro report_state_incremental() -%}
    {{ return(report_state_from() is not none) }}
{%- endmacro %}

{#- R, the report date the state held is for, when this run moves it (else none). -#}
{% macro report_state_from() -%}
    {%- if model is not defined -%}
        {#- rendered outside dbt (sqlfluff's templater) -#}
        {{ return('2020-07-30') }}
    {%- endif -%}
    {%- if not execute or this is none or not is_incremental() -%}
        {#- `this` is none in a unit test -#}
        {{ return(none) }}
    {%- endif -%}
    {%- if not run_query("select to_regclass('" ~ report_state_log() ~ "') is not null").columns[0].values()[0] -%}
        {#- compiled without the on-run-start hooks that create the log (dbt compile) -#}
        {{ return(none) }}
    {%- endif -%}
    {%- set delta_of = config.get('delta_of') or [] -%}
    {%- set plan_query -%}
        select
            held.report_date::text,
            {%- if delta_of %}
            (
                select count(*)
                from {{ report_state_log() }} as keyed
                where
                    keyed.model_name in ('{{ delta_of | join("', '") }}')
                    and keyed.report_date = {{ report_date() }}
                    and keyed.from_date = held.report_date
                    and keyed.from_deliveries = held.deliveries
            ) = {{ delta_of | length }}
            {%- else %}
            held.deliveries = {{ deliveries_through('held.report_date') }}
            {%- endif %} as follows
        from {{ report_state_log() }} as held
        where held.model_name = '{{ this.identifier }}'
    {%- endset -%}
    {%- set found = run_query(plan_query) -%}
    {%- if found.rows | length == 0 or not found.rows[0][1] -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(found.rows[0][0]) }}
{%- endmacro %}

{#- WHERE condition: `column` is one of the keys whose state this run moves (those in
    `relation`'s `__changes`, by default this model's); every key when built whole. -#}
{% macro among_state_changes(column, relation=none) -%}
    {%- if report_state_incremental() -%}
        {%- set changes = report_state_side(relation or this, 'changes') -%}
        {%- set key = column.split('.')[-1] -%}
        {{ column }} = any(array(select changes.{{ key }} from {{ changes }} as changes))
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The rows a keyed state had for this run's keys before the run. -#}
{% macro replaced_state(relation) -%}
    {{ report_state_side(relation, 'replaced') }}
{%- endmacro %}

{#- The rows a keyed state wrote for this run's keys (its rows for them after the run). -#}
{% macro moved_state(relation) -%}
    {{ report_state_side(relation, 'rows') }}
{%- endmacro %}

{#- The keys a keyed state moved this run (one column, named as its state_key). -#}
{% macro state_change_keys(relation) -%}
    {{ report_state_side(relation, 'changes') }}
{%- endmacro %}

{#- Step 1 of a keyed state, before its SQL runs: the keys of the rows of every
    `state_changes` input with a drop date between R and D. -#}
{% macro report_state_changes(state_key) -%}
    {%- set held = report_state_from() -%}
    {%- set bounds = [held, report_date_value() | string] | sort -%}
    {%- set changes = report_state_side(this, 'changes') -%}
    {%- set replaced = report_state_side(this, 'replaced') -%}
    drop table if exists {{ changes }};
    drop table if exists {{ replaced }};
    create unlogged table {{ changes }} as
    {%- for input in config.get('state_changes') %}
    {%- if not loop.first %}
    union
    {%- endif %}
    select {{ state_key }} from {{ ref(input['ref']) }}
    where {{ input['drop_date'] }} > date '{{ bounds[0] }}' and {{ input['drop_date'] }} <= date '{{ bounds[1] }}'
    {%- endfor %};
    analyze {{ changes }};
    create unlogged table {{ replaced }} (like {{ this }});
    with moved_out as (
        delete from {{ this }}
        where {{ state_key }} = any(array(select changes.{{ state_key }} from {{ changes }} as changes))
        returning *
    )
    insert into {{ replaced }} select * from moved_out
{%- endmacro %}

{#- The model's rows (the run's keys), kept in `<model>__rows` for the checks and for an
    aggregate of the state (until the next run, like `__replaced`), then appended. -#}
{% macro append_report_state(target_relation, model_sql) -%}
    {%- set rows = report_state_side(this, 'rows') -%}
    drop table if exists {{ rows }};
    create unlogged table {{ rows }} as
    {{ model_sql }};
    analyze {{ rows }};
    insert into {{ target_relation }} select * from {{ rows }}
{%- endmacro %}

{#- The checks of a moved keyed state's new rows, read from `<model>__rows` (no lookup
    in the table: the run deleted every row of its keys before it appended them): every
    row's key is one of the run's changes (a model that lost its
    `among_state_changes` condition would add a second row to a key it did not move),
    and `grain` holds among them. -#}
{% macro assert_report_state_rows(state_key) -%}
    do $outside_changes$
    declare
        found text;
    begin
        select string_agg(distinct rows.{{ state_key }}::text, ', ') into found
        from (
            select {{ state_key }} from {{ report_state_side(this, 'rows') }}
            except
            select {{ state_key }} from {{ report_state_side(this, 'changes') }}
            limit {{ shown_duplicates() }}
        ) as rows;
        if found is not null then
            raise exception '%', format(
                '{{ this.identifier }}: the model wrote rows of {{ state_key }} not among the run''s changes: %s',
                found
            ) using hint = 'its SQL reads its inputs where among_state_changes(...) (macros/materializations/report_state.sql)';
        end if;
    end
    $outside_changes$;
    {%- if config.get('grain') %}
    {{ assert_unique_in_increment(config.get('grain'), 'true', rows=report_state_side(this, 'rows')) }}
    {%- endif %}
{%- endmacro %}

{#- An aggregate: its SQL (held + delta) replaces the table's rows. -#}
{% macro replace_report_state(target_relation, model_sql) -%}
    create temporary table report_state_rows on commit drop as
    {{ model_sql }};
    delete from {{ target_relation }};
    insert into {{ target_relation }} select * from report_state_rows
{%- endmacro %}

{% macro drop_report_state_side_tables() -%}
    drop table if exists {{ report_state_side(this, 'changes') }};
    drop table if exists {{ report_state_side(this, 'replaced') }};
    drop table if exists {{ report_state_side(this, 'rows') }}
{%- endmacro %}

{#- Step 3: R = D, with the fingerprint of the deliveries up to D (an aggregate: its keyed
    states'), and where it came from when moved. -#}
{% macro log_report_state(moved) -%}
    {%- set delta_of = config.get('delta_of') -%}
    insert into {{ report_state_log() }} as held (
        model_name, report_date, deliveries, from_date, from_deliveries, built_at
    )
    select
        '{{ this.identifier }}',
        {{ report_date() }},
        {%- if delta_of %}
        (select keyed.deliveries from {{ report_state_log() }} as keyed where keyed.model_name = '{{ delta_of[0] }}'),
        {%- else %}
        {{ deliveries_through(report_date()) }},
        {%- endif %}
        null,
        null,
        clock_timestamp()
    on conflict (model_name) do update set
        report_date = excluded.report_date,
        deliveries = excluded.deliveries,
        from_date = {{ 'held.report_date' if moved else 'null' }},
        from_deliveries = {{ 'held.deliveries' if moved else 'null' }},
        built_at = excluded.built_at
{%- endmacro %}

{#- What changes an installation's state as at the end of a date (the two installation
    states and the progress counts built from them): a version of the installation
    (stg_dcc__installations, in the drop of its effective_from) or of its migration state
    (int_installation_status_versions, valid_from = the drop that made it). -#}
{% macro installation_state_changes() -%}
    {{ return(installation_version_changes() + [
        {'ref': 'int_installation_status_versions', 'drop_date': 'valid_from'},
    ]) }}
{%- endmacro %}

{#- What changes who is responsible for an installation as at the end of a date
    (int_installation_responsibilities_eod): a version of the installation alone. A
    subset of installation_state_changes(), so the responsibilities' `__changes` are among
    the migration states' (int_cohort_progress_eod relies on it): about 1,600 keys a
    national day instead of 356,000 (docs/performance.md). -#}
{% macro installation_version_changes() -%}
    {{ return([
        {'ref': 'stg_dcc__installations', 'drop_date': '_drop_date'},
    ]) }}
{%- endmacro %}
