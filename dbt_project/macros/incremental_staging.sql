{#- Staging tables are incremental by delivery (docs/performance.md): a run types and
    validates only the rows of drops delivered since that model was last built, so the
    daily cost follows the day's drop, not the history.

    staging.delivery_log records, per staging model, which delivery of each drop date it
    holds (raw.drop_ledger's drop_date + landed_at; raw only ever holds the current
    delivery of a date). A model's pending deliveries are the current ledger entries it
    has not logged. Pre-hook: take the landing lock in shared mode (no landing can commit
    until this model's transaction does, so the ledger and raw cannot move under it),
    then delete the model's rows of every pending drop date (an earlier delivery being
    replaced). Model: the raw rows of the pending drop dates. Post-hooks: the grain holds
    for those rows; the log now says the model holds every current delivery; analyze
    when stale (macros/increment_checks.sql). All of it is one transaction (dbt runs model
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

{#- The pending drop dates of this model, as a subquery yielding drop_date: the
    deliveries it has not logged, and the dates it logged that no longer have a current
    delivery (a landing taken back with `s1mig land --undo`: their rows are deleted). -#}
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

{#- WHERE condition on a raw source's rows: only the pending drop dates. `= any(array(...))`
    makes the dates one parameter the planner looks up in the _drop_date index, instead of
    a semi-join that scans the whole history. -#}
{% macro in_pending_drops() -%}
    _drop_date = any(array{{ pending_drop_dates() }})
{%- endmacro %}

{% macro begin_delivery_increment() -%}
    select pg_advisory_xact_lock_shared({{ landing_lock_id() }});
    {% if config.get('versions_key') -%}
        {{ note_replaced_version_keys() }};
    {%- endif %}
    {% if is_incremental() -%}
        delete from {{ this }} where {{ in_pending_drops() }};
    {%- endif %}
{%- endmacro %}

{#- Post-hook of every staging model, before the log: the model's grain (config `grain`,
    its key, the indexed column first) holds for the rows of the pending drops against
    everything staged; a record delivered twice fails the model naming the file, line
    and drop of each copy (macros/increment_checks.sql). -#}
{% macro assert_delivery_grain() -%}
    {%- set grain = config.get('grain') -%}
    {%- if execute and not grain -%}
        {{ exceptions.raise_compiler_error("staging model " ~ this.identifier ~ " has no config grain (its key)") }}
    {%- endif -%}
    {{ assert_unique_in_increment(grain or ['_drop_date'], in_pending_drops(), lineage=true) }}
{%- endmacro %}

{% macro end_delivery_increment(upstream=none) -%}
    {%- if config.get('versions_key') and is_incremental() %}
    {{ recompute_valid_to() }};
    {%- endif %}
    delete from {{ delivery_log() }} where model_name = '{{ this.identifier }}';
    insert into {{ delivery_log() }} (model_name, drop_date, landed_at)
    select '{{ this.identifier }}', available.drop_date, available.landed_at
    from {{ available_deliveries(upstream) }} as available
{%- endmacro %}

{#- A versioned staging model (config `versions_key`: stg_dcc__installations, versions of
    an installation_id) carries valid_from = effective_from and valid_to = the next
    version's effective_from of the same key (NULL = current). Its SQL computes valid_to
    within the drops it types, which is the whole table on a full build. An incremental
    run can also change the valid_to of versions it keeps: a new version ends the one
    before it, and a corrected drop that lost a version makes the one before it end
    elsewhere or become current again. So the pre-hook notes the keys of the rows it is
    about to replace (a temporary table, dropped at commit) and the post-hook recomputes
    valid_to over every version of those keys and of the run's new rows: work that
    follows the delivery's keys through the (key, effective_from) index, not the
    population. The table is created on every run, empty when the pre-hook finds no
    incremental table: a model that replaces a view of an older release is not
    incremental to its pre-hook but is to its post-hook, which then recomputes from the
    new rows alone, all of them. -#}
{#- valid_to of a staged version: the next version's effective_from of the same key. One
    definition for the models' SQL (stg_dcc__parties, stg_dcc__installations) and the
    post-hook that keeps it across deliveries. -#}
{% macro next_version_from(key) -%}
    lead(effective_from) over (partition by {{ key }} order by effective_from)
{%- endmacro %}

{% macro replaced_version_keys() -%}{{ this.identifier }}__replaced_keys{%- endmacro %}

{% macro note_replaced_version_keys() -%}
    {%- if is_incremental() -%}
    create temporary table {{ replaced_version_keys() }} on commit drop as
    select distinct {{ config.get('versions_key') }}::text as version_key
    from {{ this }}
    where {{ in_pending_drops() }}
    {%- else -%}
    create temporary table {{ replaced_version_keys() }} (version_key text) on commit drop
    {%- endif -%}
{%- endmacro %}

{% macro recompute_valid_to() -%}
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
            select {{ key }} from {{ this }} where {{ in_pending_drops() }}
        ))
    ) as recomputed
    where
        versions.{{ key }} = recomputed.{{ key }}
        and versions.effective_from = recomputed.effective_from
        and versions.valid_to is distinct from recomputed.valid_to
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
