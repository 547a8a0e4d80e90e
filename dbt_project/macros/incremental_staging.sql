{#- Staging tables are incremental by delivery (docs/performance.md): a run types and
    validates only the rows of drops delivered since that model was last built, so the
    daily cost follows the day's drop, not the history.

    staging.delivery_log records, per staging model, which delivery of each drop date it
    holds (raw.drop_ledger's drop_date + landed_at; raw only ever holds the current
    delivery of a date). A model's pending deliveries are the current ledger entries it
    has not logged. Pre-hook: take the landing lock in shared mode (no landing can commit
    until this model's transaction does, so the ledger and raw cannot move under it),
    then delete the model's rows of every pending drop date (an earlier delivery being
    replaced). Model: the raw rows of the pending drop dates. Post-hooks: the log now says
    the model holds every current delivery; analyze. All of it is one transaction (dbt runs model
    hooks inside the model's transaction), so a failed build leaves the model as it was.
    A full refresh rebuilds from every current delivery. -#}

{#- Must equal LANDING_LOCK in src/s1mig/land.py (tests/test_warehouse.py checks it). -#}
{% macro landing_lock_id() -%}1364019527{%- endmacro %}

{% macro delivery_log() -%}staging.delivery_log{%- endmacro %}

{#- The deliveries a model builds from, as a subquery yielding (drop_date, landed_at).
    Staging (upstream none): the current deliveries of the ledger. A history model
    (intermediate, below): the deliveries that every one of its parent models has
    logged, so it never runs ahead of what its inputs hold (a partial `dbt build
    --select` included). -#}
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
        where upstream_log.model_name in (
            {%- for name in upstream %}'{{ name }}'{% if not loop.last %}, {% endif %}{% endfor -%}
        )
        group by upstream_log.drop_date, upstream_log.landed_at
        having count(*) = {{ upstream | length }}
    )
    {%- endif -%}
{%- endmacro %}

{#- The pending drop dates of this model, as a subquery yielding drop_date. -#}
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
        {%- endif %}
    )
{%- endmacro %}

{#- WHERE condition on a raw source's rows: only the pending drop dates. `= any(array(...))`
    makes the dates one parameter the planner looks up in the _drop_date index, instead of
    a semi-join that scans the whole history. -#}
{% macro in_pending_drops() -%}
    _drop_date = any(array{{ pending_drop_dates() }})
{%- endmacro %}

{% macro begin_delivery_increment() -%}
    select pg_advisory_xact_lock_shared({{ landing_lock_id() }});
    {% if is_incremental() -%}
        delete from {{ this }} where {{ in_pending_drops() }};
    {%- endif %}
{%- endmacro %}

{% macro end_delivery_increment(upstream=none) -%}
    delete from {{ delivery_log() }} where model_name = '{{ this.identifier }}';
    insert into {{ delivery_log() }} (model_name, drop_date, landed_at)
    select '{{ this.identifier }}', available.drop_date, available.landed_at
    from {{ available_deliveries(upstream) }} as available
{%- endmacro %}

{#- on-run-start: the log's table (idempotent, before any model runs). -#}
{% macro create_delivery_log() -%}
    create schema if not exists staging;
    create table if not exists {{ delivery_log() }} (
        model_name text not null,
        drop_date date not null,
        landed_at timestamptz not null,
        primary key (model_name, drop_date)
    );
{%- endmacro %}
