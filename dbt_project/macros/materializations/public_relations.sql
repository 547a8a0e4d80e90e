{#- The relations BI users read (the public models, the seeds under them) are rebuilt by
    every daily run without a lock that conflicts with a reader. dbt's own view and table
    materializations rename the old relation away and its seeds truncate: each takes an
    ACCESS EXCLUSIVE lock, which waits for every open BI transaction that read the
    relation (up to the BI statement timeout) while every later reader queues behind it
    (tests/test_bi_role.py; docs/decisions.md "BI readers never hold up the daily run").

    - `public_view`: the view is made under dbt's intermediate name and compared with the
      one in place (`pg_get_viewdef`: the same query over the same relations). The same:
      the candidate is dropped and the view in place is kept. Changed (a new release of
      the model, or a relation that was not a view): dbt's swap, as its `view`.
    - `public_table` (a small table rebuilt whole): the candidate table is made as dbt's
      `table` makes it (contract, constraints, indexes). The same structure (columns,
      types, NOT NULL, constraints, indexes): the rows move in place, a DELETE and an
      INSERT in the model's transaction, so a reader sees the old rows or the new ones.
      Changed: dbt's swap, as its `table`.
    - Seeds (`postgres__reset_csv_table` below): DELETE instead of TRUNCATE before the
      rows are loaded again, in the seed's transaction.
    A `--full-refresh` swaps as dbt does. -#}

{% materialization public_view, adapter='postgres' -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set candidate = make_intermediate_relation(target_relation) -%}
    {%- set grant_config = config.get('grants') -%}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ drop_relation_if_exists(load_cached_relation(candidate)) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}
    {%- call statement('main') -%}
        {{ get_create_view_as_sql(candidate, sql) }}
    {%- endcall -%}
    {%- set kept = existing_relation is not none and existing_relation.is_view and not should_full_refresh()
        and same_public_structure(candidate, existing_relation, 'view') -%}
    {%- set backup_relation = none -%}
    {%- if kept -%}
        {%- do adapter.drop_relation(candidate) -%}
        {%- call noop_statement('main', 'KEPT VIEW', 'KEPT') -%}
            {{ get_create_view_as_sql(candidate, sql) }}
        {%- endcall -%}
    {%- else -%}
        {%- set backup_relation = swap_public_relation(existing_relation, candidate, target_relation) -%}
    {%- endif -%}
    {{ return(finish_public_relation(target_relation, existing_relation, kept, grant_config, backup_relation)) }}
{%- endmaterialization %}

{% materialization public_table, adapter='postgres' -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set candidate = make_intermediate_relation(target_relation) -%}
    {%- set grant_config = config.get('grants') -%}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ drop_relation_if_exists(load_cached_relation(candidate)) }}
    {{ drop_relation_if_exists(load_cached_relation(make_backup_relation(target_relation, 'table'))) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}
    {%- call statement('main') -%}
        {{ get_create_table_as_sql(False, candidate, sql) }}
    {%- endcall -%}
    {%- do create_indexes(candidate) -%}
    {%- set kept = existing_relation is not none and existing_relation.is_table and not should_full_refresh()
        and same_public_structure(candidate, existing_relation, 'table') -%}
    {%- set backup_relation = none -%}
    {%- if kept -%}
        {%- call statement('move_rows') -%}
            delete from {{ target_relation }};
            insert into {{ target_relation }} select * from {{ candidate }}
        {%- endcall -%}
        {%- set moved = load_result('move_rows')['response'].rows_affected -%}
        {%- do adapter.drop_relation(candidate) -%}
        {%- call noop_statement('main', 'IN PLACE ' ~ moved, 'IN PLACE', moved) -%}
            {{ get_create_table_as_sql(False, candidate, sql) }}
        {%- endcall -%}
    {%- else -%}
        {%- set backup_relation = swap_public_relation(existing_relation, candidate, target_relation) -%}
    {%- endif -%}
    {{ return(finish_public_relation(target_relation, existing_relation, kept, grant_config, backup_relation)) }}
{%- endmaterialization %}

{#- Whether the candidate has the structure of the relation in place: a view's query
    (pg_get_viewdef names the same relations the same way for both), a table's columns
    (name, type, NOT NULL), constraints and indexes (their definitions without their
    names). -#}
{% macro same_public_structure(candidate, existing, kind) -%}
    {%- if kind == 'view' -%}
        {%- set sql -%}
            select pg_get_viewdef('{{ candidate }}'::regclass) = pg_get_viewdef('{{ existing }}'::regclass)
        {%- endset -%}
    {%- else -%}
        {%- set sql -%}
            with shape as (
                select
                    relations.which,
                    array(
                        select attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull::text
                        from pg_attribute
                        where attrelid = relations.oid and attnum > 0 and not attisdropped
                        order by attnum
                    ) as columns_,
                    array(
                        select contype::text || ' ' || pg_get_constraintdef(oid)
                        from pg_constraint
                        where conrelid = relations.oid and contype <> 'n'
                        order by 1
                    ) as constraints_,
                    array(
                        select indisunique::text || ' ' || regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', '')
                        from pg_index
                        where indrelid = relations.oid
                        order by 1
                    ) as indexes_
                from (
                    values ('candidate', '{{ candidate }}'::regclass), ('existing', '{{ existing }}'::regclass)
                ) as relations (which, oid)
            )
            select count(distinct (columns_, constraints_, indexes_)) = 1 from shape
        {%- endset -%}
    {%- endif -%}
    {{ return(run_query(sql).columns[0].values()[0]) }}
{%- endmacro %}

{#- dbt's swap: the relation in place (if any) renamed to the backup name, the candidate
    to the model's name; returns the backup, dropped after the commit. -#}
{% macro swap_public_relation(existing_relation, candidate, target_relation) -%}
    {%- set backup_relation = none -%}
    {%- if existing_relation is not none -%}
        {%- set backup_relation = make_backup_relation(target_relation, existing_relation.type) -%}
        {{ drop_relation_if_exists(load_cached_relation(backup_relation)) }}
        {%- do adapter.rename_relation(existing_relation, backup_relation) -%}
    {%- endif -%}
    {%- do adapter.rename_relation(candidate, target_relation) -%}
    {{ return(backup_relation) }}
{%- endmacro %}

{#- The end of both, as dbt's own materializations end: grants (only what differs), docs,
    the post-hooks in and after the model's transaction, its commit, the backup dropped. -#}
{% macro finish_public_relation(target_relation, existing_relation, kept, grant_config, backup_relation) -%}
    {%- if kept -%}
        {%- do log(target_relation ~ ": the same structure as in place, kept (no swap)") -%}
    {%- endif -%}
    {%- set revoke = should_revoke(existing_relation, full_refresh_mode=not kept) -%}
    {%- do apply_grants(target_relation, grant_config, should_revoke=revoke) -%}
    {%- do persist_docs(target_relation, model) -%}
    {%- do run_hooks(post_hooks, inside_transaction=True) -%}
    {%- do adapter.commit() -%}
    {%- if backup_relation is not none -%}
        {%- do adapter.drop_relation(backup_relation) -%}
    {%- endif -%}
    {%- do run_hooks(post_hooks, inside_transaction=False) -%}
    {{ return({'relations': [target_relation]}) }}
{%- endmacro %}

{#- Seeds: their rows deleted, not truncated, before they are loaded again (in the seed's
    transaction), so BI readers of the public views over them (failure_reason_codes) never
    wait for the build and never hold it up. A full refresh drops and creates, as dbt does. -#}
{% macro postgres__reset_csv_table(model, full_refresh, old_relation, agate_table) -%}
    {%- if full_refresh -%}
        {{ adapter.drop_relation(old_relation) }}
        {{ return(create_csv_table(model, agate_table)) }}
    {%- endif -%}
    {%- set reset_sql = 'delete from ' ~ old_relation.render() -%}
    {%- call statement('reset_seed') -%}
        {{ reset_sql }}
    {%- endcall -%}
    {{ return(reset_sql) }}
{%- endmacro %}
