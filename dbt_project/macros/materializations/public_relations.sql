{#- The relations BI users read (the public models, the seeds under them) are rebuilt by
    every daily run without a lock that conflicts with a reader. dbt's own view and table
    materializations rename the old relation away and its seeds truncate: each takes an
    ACCESS EXCLUSIVE lock, which waits for every open BI transaction that read the
    relation (a running query until the BI statement timeout, a transaction left open and
    idle until the BI idle timeout) while every later reader queues behind it
    (tests/test_bi_role.py; docs/decisions.md "BI readers never hold up the daily run").

    - `public_view`: the view is made under dbt's intermediate name and compared with the
      one in place (`pg_get_viewdef`: the same query over the same relations; and the
      same owner and options). The same: the candidate is dropped and the view in place
      is kept. Changed (a new release of the model, a view edited by hand, a relation
      that was not a view): dbt's swap, as its `view`. A model whose compiled SQL changed
      every run (a report-date literal, run_started_at) would be swapped every run: the
      public models' SQL has none.
    - `public_table` (a small table rebuilt whole): the candidate table is made as dbt's
      `table` makes it (contract, constraints, indexes). The same structure (below): the
      rows move in place, a DELETE and an INSERT in the model's transaction, so a reader
      sees the old rows or the new ones. Changed: dbt's swap, as its `table`.
    - Seeds (`postgres__reset_csv_table` below): DELETE instead of TRUNCATE before the
      rows are loaded again, in the seed's transaction.
    A `--full-refresh` swaps as dbt does. Everything from the candidate to the commit is
    the node's one transaction (dbt-postgres opens it with the node's first statement), so
    a pre-hook outside the transaction (it would commit first) is refused. Kept relations
    get dbt's grant comparison, as the marts do: a grant made by hand is revoked. -#}

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
    {%- if pre_hooks | selectattr('transaction', 'equalto', False) | list -%}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ ": a public_" ~ kind ~ " runs its pre-hooks in the model's transaction only"
        ) }}
    {%- endif -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type=kind) -%}
    {%- set candidate = make_intermediate_relation(target_relation) -%}
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
        and same_public_structure(candidate, existing_relation) -%}
    {{ return({
        'existing': existing_relation, 'target': target_relation, 'candidate': candidate,
        'create_sql': create_sql, 'kept': kept,
    }) }}
{%- endmacro %}

{#- Whether the candidate has the structure of the relation in place: its owner,
    persistence, options and row security; a view's query (pg_get_viewdef names the same
    relations the same way for both); the columns (name, type, NOT NULL, collation,
    default), constraints and indexes (their definitions without their names); no trigger,
    policy or rule of its own. -#}
{% macro same_public_structure(candidate, existing) -%}
    {%- set query -%}
        with shape as (
            select
                relations.which,
                (
                    c.relowner, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
                    coalesce(c.reloptions, '{}')
                )::text as relation_,
                case when c.relkind = 'v' then pg_get_viewdef(c.oid) end as query_,
                array(
                    select
                        concat_ws(
                            ' ', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attcollation,
                            a.atthasdef
                        )
                    from pg_attribute as a
                    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                    order by a.attnum
                ) as columns_,
                array(
                    select con.contype::text || ' ' || pg_get_constraintdef(con.oid)
                    from pg_constraint as con
                    where con.conrelid = c.oid and con.contype <> 'n'
                    order by 1
                ) as constraints_,
                array(
                    select
                        i.indisunique::text || ' '
                        || regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX \S+ ON \S+ USING ', '')
                    from pg_index as i
                    where i.indrelid = c.oid
                    order by 1
                ) as indexes_,
                (select count(*) from pg_trigger as t where t.tgrelid = c.oid and not t.tgisinternal)
                + (select count(*) from pg_policy as p where p.polrelid = c.oid)
                + (select count(*) from pg_rewrite as r where r.ev_class = c.oid and r.rulename <> '_RETURN')
                    as own_objects
            from (
                values ('candidate', '{{ candidate }}'::regclass), ('existing', '{{ existing }}'::regclass)
            ) as relations (which, oid)
            inner join pg_class as c on relations.oid = c.oid
        )
        select
            count(distinct (relation_, query_, columns_, constraints_, indexes_)) = 1
            and max(own_objects) = 0
        from shape
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
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
