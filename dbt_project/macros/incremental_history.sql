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

{#- F, the rebuild-from date, as a scalar subquery (NULL when nothing is pending). -#}
{% macro rebuild_from_date() -%}
    (
        select
            case
                when exists (
                    select 1 from {{ delivery_log() }} as held
                    where
                        held.model_name = '{{ this.identifier }}'
                        and held.drop_date > pending.first_date
                ) then date '-infinity'
                else pending.first_date
            end
        from (
            select min(pending_dates.drop_date) as first_date
            from {{ pending_drop_dates(history_upstream()) }} as pending_dates
        ) as pending
    )
{%- endmacro %}

{#- WHERE condition: the rows this run (re)computes, by their drop date `column`. -#}
{% macro in_history_increment(column) -%}
    {%- if is_incremental() -%}
        {{ column }} >= {{ rebuild_from_date() }}
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

{% macro end_history_increment() -%}
    {{ end_delivery_increment(history_upstream()) }}
{%- endmacro %}

{#- Post-hook of every intermediate model: fresh statistics before the marts read it
    (nothing to analyze for a view). -#}
{% macro analyze_if_table() -%}
    {%- if config.get('materialized') in ('table', 'incremental') -%}
        analyze {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- int_attempt_completion_versions' valid_to, kept right around a run's versions.
    Pre-hook (after the delete): a version whose successor was deleted is current
    again until the run says otherwise. Post-hook: the version before a run's first
    version of the same attempt and party ends where that one starts. -#}
{% macro reopen_completion_versions() -%}
    {%- if is_incremental() -%}
        update {{ this }} set valid_to = null where {{ in_history_increment('valid_to') }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro close_completion_versions() -%}
    {%- if is_incremental() -%}
        update {{ this }} as earlier
        set valid_to = later.first_valid_from
        from (
            select attempt_id, party_id, min(valid_from) as first_valid_from
            from {{ this }}
            where {{ in_history_increment('valid_from') }}
            group by attempt_id, party_id
        ) as later
        where
            earlier.attempt_id = later.attempt_id
            and earlier.party_id = later.party_id
            and earlier.valid_from < later.first_valid_from
            and earlier.valid_to is null
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
