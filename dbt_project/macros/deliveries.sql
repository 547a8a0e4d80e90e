{#- What the two delivery materializations share (macros/materializations/): the
    delivery log, the pending deliveries of a model and the build of its table.

    staging.delivery_log records, per model, which delivery of each drop date it holds
    (raw.drop_ledger's drop_date + landed_at; raw only ever holds the current delivery of
    a date). A model's pending deliveries are the current deliveries it has not logged,
    and the dates it logged that have no current delivery any more (a landing taken back
    with `s1mig land --undo`). -#}

{#- Must equal LANDING_LOCK in src/s1mig/land.py (tests/test_incremental.py checks it). -#}
{% macro landing_lock_id() -%}1364019527{%- endmacro %}

{% macro delivery_log() -%}staging.delivery_log{%- endmacro %}

{#- on-run-start: the log's table (idempotent, before any model runs). -#}
{% macro create_delivery_log() -%}
    create schema if not exists staging;
    create table if not exists {{ delivery_log() }} (
        model_name text not null,
        drop_date date not null,
        landed_at timestamptz not null,
        primary key (model_name, drop_date)
    );
    {{ create_report_state_log() }};
{%- endmacro %}

{#- is_incremental() as in dbt, true in the delivery materializations too: the model's
    table exists and this is not a full refresh. -#}
{% macro is_incremental() -%}
    {%- if model is not defined -%}
        {#- rendered outside dbt (sqlfluff's templater): like its built-in -#}
        {{ return(true) }}
    {%- endif -%}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(this.database, this.schema, this.table) -%}
    {{ return(
        relation is not none
        and relation.type == 'table'
        and model.config.materialized in ('incremental', 'delivery_staging', 'delivery_history', 'report_state')
        and not should_full_refresh()
    ) }}
{%- endmacro %}

{#- The deliveries a model builds from, as a subquery yielding (drop_date, landed_at).
    Staging (upstream none): the current deliveries of the ledger. A history model: the
    deliveries that every one of its parent models has logged, so it never runs ahead of
    what its inputs hold (a partial `dbt build --select` included). -#}
{% macro available_deliveries(upstream=none) -%}
    {%- if upstream is none -%}
        (
            select ledger.drop_date, ledger.landed_at
            from {{ source('raw', 'drop_ledger') }} as ledger
            where ledger.superseded_at is null
        )
    {%- else -%}
        (
            select upstream_log.drop_date, upstream_log.landed_at
            from {{ delivery_log() }} as upstream_log
            where upstream_log.model_name in ('{{ upstream | join("', '") }}')
            group by upstream_log.drop_date, upstream_log.landed_at
            having count(*) = {{ upstream | length }}
        )
    {%- endif -%}
{%- endmacro %}

{#- The pending drop dates of this model, as a subquery yielding drop_date (all available
    dates when the model is built whole). -#}
{% macro pending_drop_dates(upstream=none) -%}
    (
        select available.drop_date
        from {{ available_deliveries(upstream) }} as available
    {%- if is_incremental() %}
        where not exists (
            select 1 from {{ delivery_log() }} as logged
            where
                logged.model_name = '{{ this.identifier }}'
                and logged.drop_date = available.drop_date
                and logged.landed_at = available.landed_at
        )

        union

        select withdrawn.drop_date
        from {{ delivery_log() }} as withdrawn
        where
            withdrawn.model_name = '{{ this.identifier }}'
            and not exists (
                select 1 from {{ available_deliveries(upstream) }} as still_available
                where still_available.drop_date = withdrawn.drop_date
            )
    {%- endif %}
    )
{%- endmacro %}

{#- WHERE condition on a raw source's rows (staging models): only the pending drop dates.
    `= any(array(...))` makes the dates one parameter the planner looks up in the
    _drop_date index, instead of a semi-join that scans the whole history. -#}
{% macro in_pending_drops(dates=none) -%}
    {%- if dates is none -%}
        _drop_date = any(array{{ pending_drop_dates() }})
    {%- else -%}
        _drop_date = any({{ dates }})
    {%- endif -%}
{%- endmacro %}

{#- The pending drop dates as they are now, as a date[] literal for in_pending_drops(dates),
    for the statements a delivery materialization runs once it holds the landing lock
    (the dates cannot change until it commits). Written in, the planner sees how few rows
    they select (a date its statistics have not seen: about one row); as a subquery it
    assumes ten dates' worth, the whole table while a model holds under ten drops and a
    third of it at thirty, and scans the table's whole history to find them. -#}
{% macro pending_drop_dates_now() -%}
    {%- set found = run_query(
        "select coalesce(array_agg(pending.drop_date order by pending.drop_date)::text, '{}') from "
        ~ pending_drop_dates() ~ " as pending"
    ).columns[0].values()[0] -%}
    {{ return("'" ~ found ~ "'::date[]") }}
{%- endmacro %}

{#- A delivered file's manifest entry as a scalar subquery: `field` ('file', its name, or
    'sha256') of the extract named by `extract` (SQL: a quoted name or a column) in the
    current delivery of the drop date `drop_date` (SQL). What is the same for every row of
    a file is kept once, in the ledger's manifest, not in every staged row (the rows of a
    drop are always those of its current delivery; docs/decisions.md). Meant for the few
    rows a message or a reject names, not for every row of a table. -#}
{% macro delivered_file(extract, drop_date, field='file') -%}
    (
        select entry.value ->> '{{ field }}'
        from {{ source('raw', 'drop_ledger') }} as ledger
        cross join lateral jsonb_array_elements(ledger.manifest -> 'extracts') as entry (value)
        where
            ledger.drop_date = {{ drop_date }}
            and ledger.superseded_at is null
            and ledger.action = 'land'
            and entry.value ->> 'name' = {{ extract }}
    )
{%- endmacro %}

{#- The pending drop dates of this model whose current delivery the model `model_name`
    has logged, as a query yielding drop_date: that model holds those drops' rows as
    delivered now (its rows and its log commit together). -#}
{% macro staged_current_deliveries(model_name) -%}
    select held.drop_date
    from {{ delivery_log() }} as held
    inner join {{ available_deliveries() }} as available
        on
            held.drop_date = available.drop_date
            and held.landed_at = available.landed_at
    where
        held.model_name = '{{ model_name }}'
        and held.drop_date = any(array{{ pending_drop_dates() }})
{%- endmacro %}

{#- The log now says the model holds every delivery available to it. -#}
{% macro log_deliveries(upstream=none) -%}
    delete from {{ delivery_log() }} where model_name = '{{ this.identifier }}';
    insert into {{ delivery_log() }} (model_name, drop_date, landed_at)
    select '{{ this.identifier }}', available.drop_date, available.landed_at
    from {{ available_deliveries(upstream) }} as available
{%- endmacro %}

{#- Runs `sql` in the model's open transaction (opening it on the first statement). -#}
{% macro run_in_transaction(name, sql) -%}
    {%- call statement(name, auto_begin=true) -%}
        {{ sql }}
    {%- endcall -%}
{%- endmacro %}

{#- The model's rows into its table, in the open transaction, the way dbt's incremental
    materialization does it with strategy append: a first build (or a full refresh, or a
    table replacing a view) creates the table with its configured indexes, else the rows
    go through a temporary table and are appended (schema changes per on_schema_change).
    `fillfactor` (config, a percentage): the table's pages are filled to it, leaving room
    for the updates of its rows to stay on their page (heap-only: no new index entries),
    e.g. a versions model's closing of versions; an older table gets it for its new pages.
    Returns the relations to drop after the commit. -#}
{% macro build_delivery_table(existing_relation, target_relation, model_sql, on_schema_change) -%}
    {%- set to_drop = [] -%}
    {%- set full_refresh_mode = should_full_refresh() or existing_relation.is_view -%}
    {%- if existing_relation is none -%}
        {%- set build_sql = create_delivery_table_as(target_relation, model_sql) -%}
        {%- set relation_for_indexes = target_relation -%}
    {%- elif full_refresh_mode -%}
        {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
        {%- set build_sql = create_delivery_table_as(intermediate_relation, model_sql) -%}
        {%- set relation_for_indexes = intermediate_relation -%}
    {%- else -%}
        {%- do set_fillfactor(target_relation) -%}
        {%- set temp_relation = make_temp_relation(target_relation) -%}
        {%- do run_query(get_create_table_as_sql(True, temp_relation, model_sql)) -%}
        {%- set contract_config = config.get('contract') -%}
        {%- if not contract_config or not contract_config.enforced -%}
            {%- do adapter.expand_target_column_types(from_relation=temp_relation, to_relation=target_relation) -%}
        {%- endif -%}
        {%- set dest_columns = process_schema_changes(on_schema_change, temp_relation, existing_relation) -%}
        {%- if not dest_columns -%}
            {%- set dest_columns = adapter.get_columns_in_relation(existing_relation) -%}
        {%- endif -%}
        {%- set build_sql = get_incremental_append_sql({
            'target_relation': target_relation,
            'temp_relation': temp_relation,
            'unique_key': none,
            'dest_columns': dest_columns,
            'incremental_predicates': none,
        }) -%}
    {%- endif -%}
    {%- call statement('main') -%}
        {{ build_sql }}
    {%- endcall -%}
    {%- if existing_relation is none or existing_relation.is_view or should_full_refresh() -%}
        {%- do create_indexes(relation_for_indexes) -%}
    {%- endif -%}
    {%- if existing_relation is not none and full_refresh_mode -%}
        {%- set backup_relation = make_backup_relation(target_relation, existing_relation.type) -%}
        {%- do adapter.rename_relation(target_relation, backup_relation) -%}
        {%- do adapter.rename_relation(intermediate_relation, target_relation) -%}
        {%- do to_drop.append(backup_relation) -%}
    {%- endif -%}
    {{ return(to_drop) }}
{%- endmacro %}

{#- A first build's table (dbt's create table as), with the configured fillfactor. -#}
{% macro create_delivery_table_as(relation, model_sql) -%}
    {%- set fillfactor = config.get('fillfactor') -%}
    {%- if fillfactor is none -%}
        {{ return(get_create_table_as_sql(False, relation, model_sql)) }}
    {%- endif -%}
    {%- set contract_config = config.get('contract') -%}
    {%- if contract_config and contract_config.enforced -%}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ ": fillfactor is not supported with an enforced contract"
        ) }}
    {%- endif -%}
    {{ return('create table ' ~ relation ~ ' with (fillfactor = ' ~ (fillfactor | int) ~ ') as (' ~ model_sql ~ ')') }}
{%- endmacro %}

{#- An older table gets the configured fillfactor for the pages written from now on. -#}
{% macro set_fillfactor(relation) -%}
    {%- set fillfactor = config.get('fillfactor') -%}
    {%- if fillfactor is none -%}
        {{ return('') }}
    {%- endif -%}
    {%- set option = 'fillfactor=' ~ (fillfactor | int) -%}
    {%- set held = run_query(
        "select coalesce('" ~ option ~ "' = any(reloptions), false) from pg_class where oid = '"
        ~ relation ~ "'::regclass"
    ).columns[0].values()[0] -%}
    {%- if not held -%}
        {%- do run_query('alter table ' ~ relation ~ ' set (' ~ option | replace('=', ' = ') ~ ')') -%}
    {%- endif -%}
{%- endmacro %}

{#- Before the transaction: leftovers of an interrupted build under the intermediate or
    backup name. -#}
{% macro drop_delivery_leftovers(existing_relation, target_relation) -%}
    {%- set backup_type = 'table' if existing_relation is none else existing_relation.type -%}
    {{ drop_relation_if_exists(load_cached_relation(make_intermediate_relation(target_relation))) }}
    {{ drop_relation_if_exists(load_cached_relation(make_backup_relation(target_relation, backup_type))) }}
{%- endmacro %}


{#- The end both delivery materializations share, as dbt's own materializations end: grants,
    docs, the post-hooks in and after the model's transaction, its commit, the relations it
    replaced dropped. Returns what a materialization returns. -#}
{% macro finish_delivery_model(
    target_relation, existing_relation, full_refresh_mode, grant_config, post_hooks, to_drop
) -%}
    {%- set revoke = should_revoke(existing_relation, full_refresh_mode) -%}
    {%- do apply_grants(target_relation, grant_config, should_revoke=revoke) -%}
    {%- do persist_docs(target_relation, model) -%}
    {%- do run_hooks(post_hooks, inside_transaction=True) -%}
    {%- do adapter.commit() -%}
    {%- for relation in to_drop -%}
        {%- do adapter.drop_relation(relation) -%}
    {%- endfor -%}
    {%- do run_hooks(post_hooks, inside_transaction=False) -%}
    {{ return({'relations': [target_relation]}) }}
{%- endmacro %}
