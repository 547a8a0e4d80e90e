{#- materialized='delivery_staging': a staging table, incremental by delivery. A run types
    and validates only the raw rows of the drops delivered since the model was last
    built, so the daily cost follows the day's drop, not the history (docs/performance.md).

    The model's SQL selects from its raw source `where {{ in_pending_drops() }}`; its
    config names the model's grain (`grain`, its key, the indexed column first) and, for
    a versioned model, `versions_key` (the column whose versions valid_from/valid_to
    describe); `full_refresh=true` rebuilds it whole every run (a small model).

    In one transaction, so a failed build leaves the model as it was:
    1. take the landing lock in shared mode: no landing can commit until this model does,
       so the ledger and raw cannot move under it; read the pending dates then, and write
       them into the statements below as a literal (the planner sees how few rows they
       select; the model's own SQL, compiled before, reads them as a subquery);
    2. delete the model's rows of every pending drop date (an earlier delivery being
       replaced, or one taken back);
    3. append the model's rows (the pending drops; all of them when built whole);
    4. check the grain for those rows against everything staged
       (macros/increment_checks.sql): a record delivered twice fails the model naming the
       file, line and drop of each copy;
    5. versioned: recompute valid_to around the replaced and the new versions;
    6. log that the model holds every current delivery (macros/deliveries.sql);
    7. analyze when stale, else its `_drop_date` alone (macros/increment_checks.sql).
    on_schema_change: ignore unless configured.
    A whole build (a full refresh, or a model new to the warehouse) needs every current
    delivery's raw rows: it refuses to run while any of its raw sources has drops archived
    (src/s1mig/raw_archive.py), naming them and the command that puts them back. -#}
{% materialization delivery_staging, adapter='postgres' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set full_refresh_mode = should_full_refresh() or existing_relation is none or existing_relation.is_view -%}
    {%- set on_schema_change = incremental_validate_on_schema_change(
        config.get('on_schema_change'), default='ignore'
    ) -%}
    {%- set grant_config = config.get('grants') -%}
    {%- if not config.get('grain') -%}
        {{ exceptions.raise_compiler_error("staging model " ~ this.identifier ~ " has no config grain (its key)") }}
    {%- endif -%}

    {{ refuse_whole_build_over_archived_raw(full_refresh_mode) }}
    {{ drop_delivery_leftovers(existing_relation, target_relation) }}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- do run_in_transaction('landing_lock', 'select pg_advisory_xact_lock_shared(' ~ landing_lock_id() ~ ')') -%}
    {%- set pending = pending_drop_dates_now() -%}
    {%- do retire_staged_file_name(existing_relation, full_refresh_mode) -%}
    {%- do run_in_transaction('begin_delivery_increment', begin_delivery_increment(pending)) -%}
    {%- set to_drop = build_delivery_table(existing_relation, target_relation, sql, on_schema_change) -%}
    {%- do run_in_transaction('assert_delivery_grain', assert_delivery_grain(pending)) -%}
    {%- do run_in_transaction('end_delivery_increment', end_delivery_increment(pending)) -%}
    {%- do run_in_transaction('analyze_if_stale', analyze_table_if_stale('_drop_date')) -%}

    {{ return(finish_delivery_model(
        target_relation, existing_relation, full_refresh_mode, grant_config, post_hooks, to_drop
    )) }}
{% endmaterialization %}

{% macro refuse_whole_build_over_archived_raw(full_refresh_mode) -%}
    {%- if full_refresh_mode and execute -%}
        {%- set extracts = [] -%}
        {%- for source_name, table_name in model.sources if source_name == 'raw' -%}
            {%- do extracts.append(table_name) -%}
        {%- endfor -%}
        {%- set exists = run_query("select to_regclass('raw.archived_extracts') is not null").columns[0].values()[0] -%}
        {%- if extracts and exists -%}
            {%- set archived = run_query(
                "select string_agg(distinct archived.drop_date::text, ', ' order by archived.drop_date::text) "
                ~ "from raw.archived_extracts as archived "
                ~ "join " ~ source('raw', 'drop_ledger') ~ " as ledger on ledger.drop_date = archived.drop_date "
                ~ "and ledger.landed_at = archived.landed_at and ledger.superseded_at is null "
                ~ "where archived.extract_name in ('" ~ extracts | join("', '") ~ "')"
            ).columns[0].values()[0] -%}
            {%- if archived -%}
                {{ exceptions.raise_compiler_error(
                    this.identifier ~ " cannot be built whole: the raw rows of drops " ~ archived
                    ~ " are archived; put them back first with `s1mig land --restore-archived`"
                ) }}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- Step 2 (and, versioned, noting the keys of the rows being replaced); `pending`: the
    pending dates read under the landing lock (pending_drop_dates_now), here and below. -#}
{% macro begin_delivery_increment(pending) -%}
    {% if config.get('versions_key') -%}
        {{ note_replaced_version_keys(pending) }};
    {%- endif %}
    {% if is_incremental() -%}
        delete from {{ this }} where {{ in_pending_drops(pending) }};
    {%- else -%}
        select 1;
    {%- endif %}
{%- endmacro %}

{#- Step 4. An incremental run looks each key of its rows up through the index whose
    leading column is the grain's first column. -#}
{% macro assert_delivery_grain(pending) -%}
    {{ assert_unique_in_increment(config.get('grain'), in_pending_drops(pending), lineage=staged_extract()) }}
{%- endmacro %}

{#- A staged table from before the rows stopped carrying their file's name (it is the
    drop's delivered file, delivered_file) loses the column `_file_name` on its next
    incremental build, in the model's transaction: a change of the catalog only; the rows
    already staged keep its bytes until the table is rewritten (`vacuum full`, or a full
    refresh). -#}
{% macro retire_staged_file_name(existing_relation, full_refresh_mode) -%}
    {%- if not full_refresh_mode and staged_extract().startswith("'") -%}
        {%- set columns = adapter.get_columns_in_relation(existing_relation) | map(attribute='name') | list -%}
        {%- if '_file_name' in columns -%}
            {%- do run_in_transaction(
                'retire_staged_file_name', 'alter table ' ~ this ~ ' drop column _file_name'
            ) -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- The extract a staging model's rows come from, as SQL: its raw source's name, quoted;
    for a model of several extracts (stg_dcc__rejects), its column extract_name. A staged
    row's file is its drop's delivered file of that extract (delivered_file), so the rows
    do not carry it. -#}
{% macro staged_extract() -%}
    {%- set extracts = [] -%}
    {%- for source_name, table_name in model.sources
        if source_name == 'raw' and table_name != 'drop_ledger' and table_name not in extracts -%}
        {%- do extracts.append(table_name) -%}
    {%- endfor -%}
    {{ return("'" ~ extracts[0] ~ "'" if extracts | length == 1 else 'repeated.extract_name') }}
{%- endmacro %}

{#- Steps 5 and 6. -#}
{% macro end_delivery_increment(pending) -%}
    {%- if config.get('versions_key') and is_incremental() %}
        {{ recompute_valid_to(pending) }};
    {%- endif %}
    {{ log_deliveries() }}
{%- endmacro %}

{#- valid_to of a staged version: the next version's effective_from of the same key. One
    definition for the versioned models' SQL (stg_dcc__parties, stg_dcc__installations)
    and for step 5, which keeps it across deliveries. -#}
{% macro next_version_from(key) -%}
    lead(effective_from) over (partition by {{ key }} order by effective_from)
{%- endmacro %}

{#- A versioned model's SQL computes valid_to within the drops it types (the whole table
    on a full build). An incremental run can also change the valid_to of versions it
    keeps: a new version ends the one before it, and a corrected drop that lost a version
    makes the one before it end elsewhere or become current again. So step 2 notes the
    keys of the rows it replaces (a temporary table, dropped at commit) and step 5
    recomputes valid_to over every version of those keys and of the run's new rows,
    through the (key, effective_from) index: work that follows the delivery's keys, not
    the population. The table is created on every run (empty when the model is built
    whole). -#}
{% macro replaced_version_keys() -%}{{ this.identifier }}__replaced_keys{%- endmacro %}

{% macro note_replaced_version_keys(pending) -%}
    {%- if is_incremental() -%}
        create temporary table {{ replaced_version_keys() }} on commit drop as
        select distinct {{ config.get('versions_key') }}::text as version_key
        from {{ this }}
        where {{ in_pending_drops(pending) }}
    {%- else -%}
        create temporary table {{ replaced_version_keys() }} (version_key text) on commit drop
    {%- endif -%}
{%- endmacro %}

{% macro recompute_valid_to(pending) -%}
    {%- set key = config.get('versions_key') -%}
    update {{ this }} as versions
    set valid_to = recomputed.valid_to
    from (
        select
            {{ key }},
            effective_from,
            {{ next_version_from(key) }} as valid_to
        from {{ this }}
        where {{ key }} = any(array(
            select version_key from {{ replaced_version_keys() }}
            union
            select {{ key }} from {{ this }} where {{ in_pending_drops(pending) }}
        ))
    ) as recomputed
    where
        versions.{{ key }} = recomputed.{{ key }}
        and versions.effective_from = recomputed.effective_from
        and versions.valid_to is distinct from recomputed.valid_to
{%- endmacro %}
