{#- History models (docs/performance.md, docs/operations.md): intermediate tables that
    hold state for every landed drop, not only for the report date being built, and that
    a run brings up to date for the deliveries its inputs gained since it last ran.

    Every staged record lies in the drop of its own local day (the first drop also
    carries everything before it; staging rejects anything else), so what a drop D adds
    can only change state from D on. A run computes the rows of every drop date from
    its "rebuild-from" date F on, and keeps the rows before F:
    - F = the earliest pending drop date, when the model holds no drop after it: the
      usual case (the day's new drop; also the latest drop delivered again);
    - F = -infinity (rebuild all) when a pending date lies before a drop the model
      already holds: a correction of an earlier drop, or drops landed out of order.
      Rare, and then it costs what a full build costs.
    Pending deliveries are tracked like staging's (staging.delivery_log, per model),
    against the deliveries every parent model has logged, so a history model never runs
    ahead of its inputs. Pre-hook (delete from F), model (rows from F) and post-hook
    (log) run in the model's transaction: a failed build leaves the model as it was. -#}

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
    sees how few rows it selects (as a subquery it guessed a third of the table and
    scanned the whole history). That is safe: only this model's own post-hook and its
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
    makes the keys one parameter looked up in the input's index; as a join, the planner
    scanned the whole input (history-sized). A full build reads everything. -#}
{% macro among_history_keys(column, keys_query) -%}
    {%- if is_incremental() -%}
        {{ column }} = any(array({{ keys_query }}))
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of the versions models: no nested-loop joins in their transaction. Their
    CTEs are sized by the day's touched keys, which the planner cannot see through
    `= any(array(...))`: it expected a row or two and nested one CTE scan inside another
    (full scale, day 31: minutes instead of 6.8 s). Index lookups are not joins and stay;
    a LATERAL lookup has no other plan and stays a nested loop. -#}
{% macro plan_without_nested_loops() -%}
    set local enable_nestloop = off
{%- endmacro %}

{#- Post-hook of the versions models: nested loops again. What follows the model's query
    looks up the keys of the run's versions one by one through their index (closing the
    versions before them, the grain checks); as hash joins, under the pre-hook's setting,
    each read every version of the history (full scale, day 31: 12-14 s a model instead
    of under 2 s on day 2). -#}
{% macro plan_with_nested_loops() -%}
    set local enable_nestloop = on
{%- endmacro %}

{% macro begin_history_increment(column) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ in_history_increment(column) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro end_history_increment() -%}
    {{ end_delivery_increment(history_upstream()) }}
{%- endmacro %}

{#- valid_to of a versions model (one version per key per drop date valid_from), kept
    right around a run's versions. Pre-hook (after the delete): a version whose
    successor was deleted is current again until the run says otherwise. Post-hook: the
    version before a run's first version of the same key ends where that one starts. -#}
{% macro reopen_versions() -%}
    {%- if is_incremental() -%}
        update {{ this }} set valid_to = null where {{ in_history_increment('valid_to') }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro close_versions(keys) -%}
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
            {% for key in keys -%}
                earlier.{{ key }} = later.{{ key }} and
            {% endfor -%}
            earlier.valid_from < later.first_valid_from
            and earlier.valid_to is null
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The hooks of a versions model (one version per key per drop date valid_from):
    pre-hook: plan without nested loops, delete the versions from F on, reopen the
    versions they ended; post-hook: plan with nested loops again, end the versions the
    run's first versions follow, check that the keys of the run's versions have one
    version per drop date and one current version (macros/increment_checks.sql), log
    the deliveries. -#}
{% macro begin_versions_increment() -%}
    {{ plan_without_nested_loops() }};
    {{ begin_history_increment('valid_from') }};
    {{ reopen_versions() }}
{%- endmacro %}

{% macro end_versions_increment(keys) -%}
    {{ plan_with_nested_loops() }};
    {{ close_versions(keys) }};
    {{ assert_unique_in_increment(keys + ['valid_from'], in_history_increment('valid_from')) }};
    {{ assert_unique_in_increment(keys, in_history_increment('valid_from'), where='valid_to is null') }};
    {{ end_history_increment() }}
{%- endmacro %}
