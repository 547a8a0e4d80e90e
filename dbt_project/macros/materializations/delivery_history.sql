{#- materialized='delivery_history': an intermediate table that holds state for every
    landed drop, not only for the report date being built, and that a run brings up to
    date for the deliveries its parent models gained since it last ran
    (docs/performance.md, docs/decisions.md).

    Every staged record lies in the drop of its own local day (the first drop also
    carries everything before it; staging rejects anything else), so what a drop D adds
    can only change state from D on. A run computes the rows of every drop date from
    its "rebuild-from" date F on, and keeps the rows before F:
    - F = the earliest pending drop date, when the model holds no drop after it: the
      usual case (the day's new drop; also the latest drop delivered again);
    - F = -infinity (rebuild all) when a pending date lies before a drop the model
      already holds: a correction of an earlier drop, or drops landed out of order.
      Rare, and then it costs what a full build costs.
    Pending deliveries are those every parent model has logged and this one has not
    (macros/deliveries.sql), so a history model never runs ahead of its inputs.

    The model's SQL reads its inputs `where {{ in_history_increment('<drop date column>') }}`
    (and a big input by key with `among_history_keys`). Its config may name:
    - `grain`: keys checked unique among the run's rows (macros/increment_checks.sql);
    - `versions_key`: the model holds versions (one per key per drop date valid_from,
      valid_to = the next version's valid_from, NULL = current), F applies to
      valid_from, and the run keeps valid_to right around its versions;
    - `versions_final`: a key has one version ever (valid_to always NULL; e.g. a
      completion, which is final). With a unique index on exactly `versions_key` the
      index holds that for every row as it is written, so the run neither reopens,
      closes nor checks versions (each a pass over the whole history); without one (a
      warehouse from before the index was configured) the run does all three as for
      any versions model.
    on_schema_change: fail unless configured.

    In one transaction, so a failed build leaves the model as it was:
    1. versions: plan without nested loops (below);
    2. delete the rows from F on; versions: reopen the versions they ended (when the
       model held a drop from F on);
    3. append the model's rows (from F on);
    4. analyze when stale (macros/increment_checks.sql);
    5. versions: plan with nested loops again, end the versions that the run's first
       versions follow, check one version per key and drop date and one current version
       per key; otherwise check `grain`, if configured;
    6. log the deliveries the model now holds. -#}
{% materialization delivery_history, adapter='postgres' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set full_refresh_mode = should_full_refresh() or existing_relation is none or existing_relation.is_view -%}
    {%- set on_schema_change = incremental_validate_on_schema_change(
        config.get('on_schema_change'), default='fail'
    ) -%}
    {%- set grant_config = config.get('grants') -%}
    {%- set versions_key = config.get('versions_key') -%}
    {%- if versions_key is string -%}
        {%- set versions_key = [versions_key] -%}
    {%- endif -%}

    {{ drop_delivery_leftovers(existing_relation, target_relation) }}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- set final_versions = versions_key and config.get('versions_final', false)
        and is_incremental() and has_unique_index(versions_key) -%}
    {%- if final_versions -%}
        {%- do run_in_transaction(
            'begin_history_increment', 'set local enable_nestloop = off; ' ~ begin_history_increment('valid_from')
        ) -%}
    {%- elif versions_key -%}
        {%- do run_in_transaction('begin_history_increment', begin_versions_increment()) -%}
    {%- else -%}
        {%- do run_in_transaction('begin_history_increment', begin_history_increment('_drop_date')) -%}
    {%- endif -%}
    {%- set to_drop = build_delivery_table(existing_relation, target_relation, sql, on_schema_change) -%}
    {%- do run_in_transaction('analyze_if_stale', analyze_table_if_stale()) -%}
    {%- if final_versions -%}
        {%- do run_in_transaction('end_history_increment', log_deliveries(history_upstream())) -%}
    {%- elif versions_key -%}
        {%- do run_in_transaction('end_history_increment', end_versions_increment(versions_key)) -%}
    {%- else -%}
        {%- if config.get('grain') -%}
            {%- do run_in_transaction(
                'assert_history_grain',
                assert_unique_in_increment(config.get('grain'), in_history_increment('_drop_date'))
            ) -%}
        {%- endif -%}
        {%- do run_in_transaction('end_history_increment', log_deliveries(history_upstream())) -%}
    {%- endif -%}

    {{ return(finish_delivery_model(
        target_relation, existing_relation, full_refresh_mode, grant_config, post_hooks, to_drop
    )) }}
{% endmaterialization %}

{#- The parent models of this model (the names they log deliveries under). -#}
{% macro history_upstream() -%}
    {%- if model is not defined -%}
        {#- rendered outside dbt (sqlfluff's templater): a stand-in parent -#}
        {{ return(['parent_model']) }}
    {%- endif -%}
    {%- set parents = [] -%}
    {%- for node_id in model.depends_on.nodes if node_id.startswith('model.') -%}
        {%- do parents.append(node_id.split('.')[-1]) -%}
    {%- endfor -%}
    {%- if execute and parents | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "history model " ~ this.identifier ~ " has no parent model to follow the deliveries of"
        ) }}
    {%- endif -%}
    {{ return(parents) }}
{%- endmacro %}

{#- F, the rebuild-from date, as a query of one row: 'all' (rebuild all), 'from <date>'
    or NULL when nothing is pending (text, so that neither the driver nor dbt's type
    inference gets to read an infinite date). -#}
{% macro rebuild_from_date_query() -%}
    select
        case
            when exists (
                select 1 from {{ delivery_log() }} as held
                where
                    held.model_name = '{{ this.identifier }}'
                    and held.drop_date > pending.first_date
            ) then 'all'
            else 'from ' || pending.first_date::text
        end as rebuild_from
    from (
        select min(pending_dates.drop_date) as first_date
        from {{ pending_drop_dates(history_upstream()) }} as pending_dates
    ) as pending
{%- endmacro %}

{#- WHERE condition: the rows this run (re)computes, by their drop date `column`.
    F is looked up when the SQL is rendered and written in as a literal, so the planner
    sees how few rows it selects. That is safe: only this model's own last step and its
    parents (finished before it starts) write the log F is read from. -#}
{% macro in_history_increment(column) -%}
    {%- if not is_incremental() -%}
        true
    {%- elif not execute -%}
        {#- parsing: no database; the statement is never run -#}
        false
    {%- else -%}
        {%- set rebuild_from = run_query(rebuild_from_date_query()).columns[0].values()[0] -%}
        {%- if rebuild_from is none -%}
            false
        {%- elif rebuild_from == 'all' -%}
            true
        {%- else -%}
            {{ column }} >= date '{{ rebuild_from[5:] }}'
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- WHERE condition for a history model reading a big input by key: `column` is one of
    the keys `keys_query` yields (the keys this run recomputes). `= any(array(...))`
    makes the keys one parameter looked up in the input's index, where a join would
    scan the whole input. A full build reads everything. -#}
{% macro among_history_keys(column, keys_query) -%}
    {%- if is_incremental() -%}
        {{ column }} = any(array({{ keys_query }}))
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{% macro begin_history_increment(column) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ in_history_increment(column) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- Steps 1 and 2 of a versions model. The model's CTEs are sized by the run's touched
    keys, which the planner cannot see through `= any(array(...))`: it would expect a row
    or two and nest one CTE scan inside another. Index lookups are not joins and stay; a
    LATERAL lookup has no other plan and stays a nested loop. Deleting the versions from
    F on makes a version whose successor was deleted current again until the run says
    otherwise. -#}
{% macro begin_versions_increment() -%}
    set local enable_nestloop = off;
    {{ begin_history_increment('valid_from') }};
    {%- if is_incremental() and holds_drops_from_rebuild_date() %}
        update {{ this }} set valid_to = null where {{ in_history_increment('valid_to') }}
    {%- else %}
        select 1
    {%- endif %}
{%- endmacro %}

{#- Whether the model holds a drop date from F, the rebuild-from date, on (a re-delivery or a
    correction): only then can a version have ended at F or later (a version ends at the
    valid_from of the next, a drop date the model built). The usual day's new drop was
    never held, so the reopening, a pass over every version, is skipped. -#}
{% macro holds_drops_from_rebuild_date() -%}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set rebuild_from = run_query(rebuild_from_date_query()).columns[0].values()[0] -%}
    {%- if rebuild_from is none -%}
        {{ return(false) }}
    {%- elif rebuild_from == 'all' -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set held = run_query(
        "select exists (select 1 from " ~ delivery_log() ~ " where model_name = '" ~ this.identifier
        ~ "' and drop_date >= date '" ~ rebuild_from[5:] ~ "')"
    ).columns[0].values()[0] -%}
    {{ return(held) }}
{%- endmacro %}

{#- Steps 5 and 6 of a versions model. Closing the versions before the run's looks the
    keys of the run's versions up one by one through their index, which needs nested
    loops again: as a hash join it would read every version of the history. Both checks
    then group the run's rows alone (`closed`): a key and drop date at or after the
    rebuild-from date is the run's own, and once close_versions has run, no version
    before the rebuild-from date of a key the run wrote is current (it ended every one of
    them at the run's first version of the key), so the run's current versions are all
    the key's current versions. -#}
{% macro end_versions_increment(keys) -%}
    set local enable_nestloop = on;
    {{ close_versions(keys) }};
    {{ assert_unique_in_increment(keys + ['valid_from'], in_history_increment('valid_from'), closed=true) }};
    {{ assert_unique_in_increment(
        keys, in_history_increment('valid_from'), where='valid_to is null', closed=true
    ) }};
    {{ log_deliveries(history_upstream()) }}
{%- endmacro %}

{#- The version before a run's first version of the same key ends where that one starts. -#}
{% macro close_versions(keys) -%}
    {%- set same_key = [] -%}
    {%- for key in keys -%}
        {%- do same_key.append('earlier.' ~ key ~ ' = later.' ~ key) -%}
    {%- endfor -%}
    {%- if is_incremental() -%}
        update {{ this }} as earlier
        set valid_to = later.first_valid_from
        from (
            select {{ keys | join(', ') }}, min(valid_from) as first_valid_from
            from {{ this }}
            where {{ in_history_increment('valid_from') }}
            group by {{ keys | join(', ') }}
        ) as later
        where
            {{ same_key | join(' and ') }}
            and earlier.valid_from < later.first_valid_from
            and earlier.valid_to is null
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
