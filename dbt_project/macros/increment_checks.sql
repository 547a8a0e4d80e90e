{#- Checks and statistics of the incremental tables (the delivery materializations,
    macros/materializations/), sized by what a run adds, not by the history the table
    holds (docs/decisions.md, docs/performance.md). Both run in the model's transaction. -#}

{#- The grain `keys` holds once for every key of the rows this run wrote (`increment`: a
    WHERE condition on the model's rows; `where`: an extra condition on the rows counted,
    e.g. the current versions). A duplicate raises an error naming the model, the key
    and, with `lineage` (SQL naming the rows' extract for delivered_file), the file, line
    and drop of every copy: the model's transaction rolls back (nothing half-loaded) and
    a corrected delivery goes through. An
    incremental run looks each distinct first key of its rows up through an index whose
    leading column it is, so the first key must be indexed and comes first in `keys`.
    The lookup is a LATERAL subquery fenced with `offset 0`: flattened into a join, the
    planner may hash it against the whole table; with `= any(array(...))` it may choose a
    bitmap scan whose lossy pages compare every row with the whole array. A full build,
    an increment of everything, or a table without that index (a warehouse from before
    the index was configured, until the model's next full refresh) groups the whole
    table. A whole-table test on every run would find the same duplicates, later and at
    the cost of the whole history.
    `closed`: every row that shares a key with a row of the increment is in the increment
    itself (the key includes the column the increment is a range of, e.g. a versions
    model's valid_from from its rebuild-from date on): the increment's rows are grouped
    alone, with no lookup per key. `rows`: a relation holding exactly the run's rows (e.g. a
    temporary table the run appended from), grouped instead of the table. -#}
-- LT02 cannot place the Jinja tags that interleave this macro's SQL:
-- noqa: disable=LT02
{% macro assert_unique_in_increment(keys, increment, where=none, lineage=false, closed=false, rows=none) -%}
    {%- set key_list = keys | join(', ') -%}
    {%- set grain_text = (key_list ~ (', ' ~ where if where else '')) | replace("'", "''") -%}
    do $assert_unique$
    declare
        found text;
        found_keys bigint;
    begin
        select
            count(*),
            string_agg(duplicate, '; ' order by duplicate)
                filter (where key_rank <= {{ shown_duplicates() }})
        into found_keys, found
        from (
            select
                format(
                    '(%s) = (%s)%s',
                    '{{ key_list }}',
                    concat_ws(', ', {{ key_list }}),
                    {%- if lineage %}
                    ' in ' || (
                        select string_agg(
                            format(
                                '%s line %s (drop %s)',
                                {{ delivered_file(lineage, 'copy.drop_date') }},
                                copy.row_number + 1,
                                copy.drop_date
                            ),
                            ' and ' order by copy.drop_date, copy.row_number
                        )
                        from unnest(repeated.drop_dates, repeated.row_numbers) as copy (drop_date, row_number)
                    )
                    {%- else %}
                    format(' %s times', repeated.copies)
                    {%- endif %}
                ) as duplicate,
                row_number() over (order by {{ key_list }}) as key_rank
            from (
                select
                    {{ key_list }},
                    {%- if lineage %}
                    array_agg(_drop_date) as drop_dates,
                    array_agg(_row_number) as row_numbers,
                    {%- endif %}
                    count(*) as copies
                {%- if rows %}
                from {{ rows }} as candidates
                {%- elif not is_incremental() or increment | trim == 'true' %}
                from {{ this }} as candidates
                {%- elif closed %}
                from (select * from {{ this }} where {{ increment }}) as candidates
                {%- elif not has_leading_index(keys[0]) %}
                from {{ this }} as candidates
                {%- else %}
                from (
                    select distinct {{ keys[0] }} as probe from {{ this }} where {{ increment }}
                ) as increment_keys
                cross join lateral (
                    select * from {{ this }} as keyed where keyed.{{ keys[0] }} = increment_keys.probe
                    offset 0  -- a fence (above)
                ) as candidates
                {%- endif %}
                {%- if where %}
                where {{ where }}
                {%- endif %}
                group by {{ key_list }}
                having count(*) > 1
            ) as repeated
        ) as duplicates;
        if found_keys > 0 then
            raise exception '%', format(
                '{{ this.identifier }}: %s key(s) occur more than once (grain: {{ grain_text }}): %s%s',
                found_keys,
                found,
                case when found_keys > {{ shown_duplicates() }} then '; ...' else '' end
            )
            {%- if lineage %}
            using hint = 'a record is delivered twice; deliver the drop again without the duplicate'
            {%- endif %};
        end if;
    end
    $assert_unique$
{%- endmacro %}
-- noqa: enable=LT02

{% macro shown_duplicates() -%}5{%- endmacro %}

{#- Whether an index of this model has `column` as its leading column (dbt creates a
    model's configured indexes only when it builds the table). -#}
{% macro has_leading_index(column) -%}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set found = run_query(
        "select count(*) from pg_index as i join pg_attribute as a on a.attrelid = i.indrelid"
        ~ " and a.attnum = i.indkey[0] where i.indrelid = '\"" ~ this.schema ~ "\".\"" ~ this.identifier
        ~ "\"'::regclass and a.attname = '" ~ column ~ "'"
    ).columns[0].values()[0] -%}
    {{ return(found > 0) }}
{%- endmacro %}

{#- Whether a unique index of this model has exactly `columns` as its key, in order, on
    every row (no expression, no predicate). -#}
{% macro has_unique_index(columns) -%}
    {{ return(has_index(columns, unique=true)) }}
{%- endmacro %}

{#- Whether an index of this model (a unique one, when `unique`) has exactly `columns` as
    its key, in order, on every row (no expression, no predicate). -#}
{% macro has_index(columns, unique=false) -%}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set found = run_query(
        "select count(*) from pg_index as i where i.indrelid = '\"" ~ this.schema ~ "\".\"" ~ this.identifier
        ~ "\"'::regclass" ~ (" and i.indisunique" if unique else "")
        ~ " and i.indpred is null and i.indexprs is null"
        ~ " and i.indnkeyatts = " ~ columns | length
        ~ " and (select array_agg(a.attname::text order by k.position) from unnest(i.indkey)"
        ~ " with ordinality as k (attnum, position) join pg_attribute as a"
        ~ " on a.attrelid = i.indrelid and a.attnum = k.attnum where k.position <= i.indnkeyatts)"
        ~ " = array['" ~ columns | join("', '") ~ "']"
    ).columns[0].values()[0] -%}
    {{ return(found > 0) }}
{%- endmacro %}

{#- A table kept from run to run keeps the indexes it was built with: an index added to the
    model's config since (an upgrade) is created once, in the model's transaction, so an
    existing warehouse does not wait for a whole build to get it. -#}
{% macro create_missing_indexes(relation) -%}
    {%- for index in config.get('indexes', default=[]) -%}
        {%- if not has_index(index['columns'], unique=index.get('unique', false)) -%}
            {%- do log(
                this.identifier ~ ': creating its configured index on (' ~ index['columns'] | join(', ')
                ~ '), once (a table built before it was configured)', info=true
            ) -%}
            {%- do run_in_transaction('create_missing_index', get_create_index_sql(relation, index)) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}

{#- Fresh planner statistics before the next model reads the table, when it is new or
    this run and the runs since its last analyze changed more than a tenth of its rows
    (autovacuum's default threshold, applied before the downstream models plan, not a
    minute later). A daily increment of a long history is a small fraction: analyzing it
    anyway would re-sample the history every run. A range over the new drop dates plans
    well in between (the planner reads a btree-indexed column's actual bounds from the
    index), but an equality does not: with a few dozen drop dates every one is a most
    common value, so a date the statistics have not seen is estimated at one row. Given
    `drop_date_column`, that column alone is analyzed when the table is not stale (one
    sample, about 0.1-0.2 s at a million rows): the gate's rule R3 looks the day's records
    up by `_drop_date = D`, and on day 31 of the small benchmark planned a nested loop over
    the day's attempts and their parties at one estimated row each (17 s instead of 0.3 s,
    growing with the square of the day's volume). The delivery materializations call
    analyze_table_if_stale themselves; analyze_if_stale is the post-hook of the other
    intermediate tables. -#}
{% macro analyze_if_stale() -%}
    {%- if config.get('materialized') in ('table', 'incremental') -%}
        {{ analyze_table_if_stale() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro analyze_table_if_stale(drop_date_column=none) -%}
    do $analyze_if_stale$
    begin
        if (
            select
                tables.reltuples < 0
                or coalesce(since_analyze.n_mod_since_analyze, 0)
                + coalesce(this_run.n_tup_ins + this_run.n_tup_upd + this_run.n_tup_del, 0)
                > {{ stale_fraction() }} * tables.reltuples
            from pg_class as tables
            left join pg_stat_user_tables as since_analyze on tables.oid = since_analyze.relid
            left join pg_stat_xact_user_tables as this_run on tables.oid = this_run.relid
            where tables.oid = '"{{ this.schema }}"."{{ this.identifier }}"'::regclass
        ) then
            analyze {{ this }};
        {{ "else analyze " ~ this ~ " (" ~ drop_date_column ~ ");" if drop_date_column else "" }}
        end if;
    end
    $analyze_if_stale$
{%- endmacro %}

{% macro stale_fraction() -%}0.1{%- endmacro %}
