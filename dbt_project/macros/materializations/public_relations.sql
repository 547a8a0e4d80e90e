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
    {%- set built = build_public_candidate('view', sql, pre_hooks) -%}
    {%- if built.kept -%}
        {%- do adapter.drop_relation(built.candidate) -%}
        {%- call noop_statement('main', 'KEPT VIEW', 'KEPT') -%}
            {{ built.create_sql }}
        {%- endcall -%}
    {%- endif -%}
    {{ return(finish_public_relation(built, post_hooks)) }}
{%- endmaterialization %}

{% materialization public_table, adapter='postgres' -%}
    {%- set built = build_public_candidate('table', sql, pre_hooks) -%}
    {%- if built.kept -%}
        {%- call statement('move_rows') -%}
            delete from {{ built.target }};
            insert into {{ built.target }} select * from {{ built.candidate }}
        {%- endcall -%}
        {%- set moved = load_result('move_rows')['response'].rows_affected -%}
        {%- do adapter.drop_relation(built.candidate) -%}
        {%- call noop_statement('main', 'IN PLACE ' ~ moved, 'IN PLACE', moved) -%}
            {{ built.create_sql }}
        {%- endcall -%}
    {%- endif -%}
    {{ return(finish_public_relation(built, post_hooks)) }}
{%- endmaterialization %}

{#- The start both share: leftovers of an interrupted build dropped, the pre-hooks, the
    candidate made under dbt's intermediate name (as dbt's `view` / `table` make the
    relation: contract, constraints, indexes) in the model's transaction, and whether the
    relation in place has its structure (then it is kept). -#}
{% macro build_public_candidate(kind, model_sql, pre_hooks) -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type=kind) -%}
    {%- set candidate = make_intermediate_relation(target_relation) -%}
    {%- do run_hooks(pre_hooks, inside_transaction=False) -%}
    {%- do drop_relation_if_exists(load_cached_relation(candidate)) -%}
    {%- do drop_relation_if_exists(load_cached_relation(make_backup_relation(target_relation, kind))) -%}
    {%- do run_hooks(pre_hooks, inside_transaction=True) -%}
    {%- if kind == 'view' -%}
        {%- set create_sql = get_create_view_as_sql(candidate, model_sql) -%}
    {%- else -%}
        {%- set create_sql = get_create_table_as_sql(False, candidate, model_sql) -%}
    {%- endif -%}
    {%- call statement('main') -%}
        {{ create_sql }}
    {%- endcall -%}
    {%- if kind == 'table' -%}
        {%- do create_indexes(candidate) -%}
    {%- endif -%}
    {%- set kept = existing_relation is not none and existing_relation.type == kind and not should_full_refresh()
        and same_public_structure(candidate, existing_relation, kind) -%}
    {{ return({
        'existing': existing_relation, 'target': target_relation, 'candidate': candidate,
        'create_sql': create_sql, 'kept': kept,
    }) }}
{%- endmacro %}

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

{#- The end both share, as dbt's own materializations end: a changed relation swapped in
    (the one in place renamed to the backup name, the candidate to the model's name), grants
    (only what differs), docs, the post-hooks in and after the model's transaction, its
    commit, the backup dropped. -#}
{% macro finish_public_relation(built, post_hooks) -%}
    {%- set backup_relation = none -%}
    {%- if built.kept -%}
        {%- do log(built.target ~ ": the same structure as in place, kept (no swap)") -%}
    {%- else -%}
        {%- if built.existing is not none -%}
            {%- set backup_relation = make_backup_relation(built.target, built.existing.type) -%}
            {%- do drop_relation_if_exists(load_cached_relation(backup_relation)) -%}
            {%- do adapter.rename_relation(built.existing, backup_relation) -%}
        {%- endif -%}
        {%- do adapter.rename_relation(built.candidate, built.target) -%}
    {%- endif -%}
    {%- set revoke = should_revoke(built.existing, full_refresh_mode=not built.kept) -%}
    {%- do apply_grants(built.target, config.get('grants'), should_revoke=revoke) -%}
    {%- do persist_docs(built.target, model) -%}
    {%- do run_hooks(post_hooks, inside_transaction=True) -%}
    {%- do adapter.commit() -%}
    {%- if backup_relation is not none -%}
        {%- do adapter.drop_relation(backup_relation) -%}
    {%- endif -%}
    {%- do run_hooks(post_hooks, inside_transaction=False) -%}
    {{ return({'relations': [built.target]}) }}
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
