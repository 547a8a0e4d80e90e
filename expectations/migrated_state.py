"""Rule 8's expectation, kept by the gate itself and moved by the day's changes.

Rule 8 checks S1MIG-010 per party against what the gate derives on its own from the
history tables, not from the models 010 is built from: the installations each party is
responsible for as at the end of D (the installation version in force at the end of D
found through valid_to; 010 takes the latest effective_from), and whether each was
migrated by a Success that listed the party (received) or not (inherited), from the
completion versions (010 reads the installation-level state versions). Recomputing that
for every installation read the whole population every day (13.5 s of a national day 31).

The gate keeps it instead in audit.gate_migrated_by_party: per party, eligible_from and
kind (received / inherited / none), how many installations, as at the end of the date
it was last moved to (audit.gate_migrated_state). Moving it from R to D recomputes the
installations whose contribution can differ between the end of R and the end of D: those
with an installation version in a drop after the earlier date up to the later, or a
completion version (valid_from) there. Their contributions as at the end of R are
counted out and as at the end of D counted in, in one pass that reads each table once for
both dates; both come from the history tables as they
are now, which hold the same rows up to R as when the state was last moved, as long as
no delivery up to R changed since (a fingerprint of the ledger's current deliveries up
to R). A correction or withdrawal of a drop up to R (and a first gate run) recomputes it
for every installation. The gate moves it before its checkpoint, in one transaction; R8
fails when it is not held for the report date.

Its own change keys and its own derivation (not 010's report states, macros/
materializations/report_state.sql) keep R8 from agreeing with a 010 that drifted: a key
the models failed to move shows as a difference here."""

from __future__ import annotations

import datetime as dt

import psycopg

from s1mig.contract import LOCAL_TZ
from s1mig.relations import with_relations

DDL = """
create schema if not exists audit;
create table if not exists audit.gate_migrated_by_party (
    party_id text not null,
    eligible_from date,
    kind text not null,
    installations bigint not null
);
create table if not exists audit.gate_migrated_state (
    singleton boolean primary key default true check (singleton),
    report_date date not null,
    deliveries text not null
)"""

# The current deliveries up to a date: what the history tables hold up to it.
DELIVERIES = """
select md5(coalesce(string_agg(drop_date::text || '@' || extract(epoch from landed_at)::text, ','
    order by drop_date), ''))
from raw.drop_ledger where superseded_at is null and drop_date <= %(day)s
"""

# The keys whose contribution can differ between the ends of two dates.
CHANGED_KEYS = """
create temporary table gate_migrated_keys on commit drop as
select installation_id from {installation_versions}
where _drop_date > %(low)s and _drop_date <= %(high)s
union
select installation_id from {attempt_completion_versions}
where valid_from > %(low)s and valid_from <= %(high)s
"""

# One row per (party, eligible_from, kind): the installations counted as at the end of each
# of {days} (date, sign: +1 counted in, -1 counted out), summed. As at the end of a date:
# the installation version in force then (valid_to after the end of the day), each fuel's
# supplier responsible for it, and its Successes in force then (completion versions) with
# the parties they listed. {keys} restricts the installations (and their attempts); with
# keys, each table is read once for all the dates (materialized), not once per date.
CONTRIBUTIONS = """
with days (day, sign) as (values {days}),
bounds as (select day, sign, ((day + 1)::timestamp at time zone '{local_tz}') as day_end from days),
installations as {materialized} (
    select installation_id, mpan, mprn, elec_supplier_id, gas_supplier_id, eligible_from, effective_from, valid_to
    from {installation_versions} as i
    where {installation_keys}
),
installations_at_end as (
    select b.day, b.sign, i.installation_id, i.mpan, i.mprn, i.elec_supplier_id, i.gas_supplier_id, i.eligible_from
    from installations as i
    join bounds as b on i.effective_from < b.day_end and (i.valid_to is null or i.valid_to >= b.day_end)
),
responsible as (
    select day, sign, installation_id, elec_supplier_id as party_id, eligible_from from installations_at_end
    where mpan is not null and elec_supplier_id is not null
    union
    select day, sign, installation_id, gas_supplier_id, eligible_from from installations_at_end
    where mprn is not null and gas_supplier_id is not null
),
completions as {materialized} (
    select installation_id, party_id, valid_from, valid_to
    from {attempt_completion_versions}
    where completion_status = 'Success' and {attempt_keys}
),
successes as (
    select b.day, c.installation_id, array_agg(distinct c.party_id) as parties
    from completions as c
    join bounds as b on c.valid_from <= b.day and (c.valid_to is null or c.valid_to > b.day)
    group by b.day, c.installation_id
)
select r.party_id, r.eligible_from,
    case when r.party_id = any(s.parties) then 'received' when s.installation_id is not null then 'inherited'
        else 'none' end as kind,
    sum(r.sign)::bigint as installations
from responsible as r
left join successes as s on s.day = r.day and s.installation_id = r.installation_id
group by 1, 2, 3
"""

_KEYS = "installation_id = any(array(select k.installation_id from gate_migrated_keys as k))"
# attempts of the keys through the attempts' installation index, then the completion
# versions through their attempt index (they have none by installation)
_ATTEMPT_KEYS = (
    "attempt_id = any(array(select a.attempt_id from {migration_attempts} as a "
    "where a.installation_id = any(array(select k.installation_id from gate_migrated_keys as k))))"
)


def _contributions(days: tuple[tuple[dt.date, int], ...], keyed: bool) -> str:
    """The contributions counted as at the end of each date, times its sign."""
    values = ", ".join(f"(date '{day.isoformat()}', {sign})" for day, sign in days)
    return with_relations(
        CONTRIBUTIONS.replace("{days}", values)
        .replace("{local_tz}", LOCAL_TZ)
        .replace("{materialized}", "materialized" if keyed else "not materialized")
        .replace("{installation_keys}", "i." + _KEYS if keyed else "true")
        .replace("{attempt_keys}", with_relations(_ATTEMPT_KEYS) if keyed else "true")
    )


def move(conn: psycopg.Connection, report_date: dt.date) -> str:
    """Bring Rule 8's expectation to the end of `report_date`, in the caller's transaction.
    Returns how: 'moved from <R>' or 'recomputed'."""
    conn.execute(DDL)
    held = conn.execute("select report_date, deliveries from audit.gate_migrated_state").fetchone()
    same = held is not None and conn.execute(DELIVERIES, {"day": held[0]}).fetchone()[0] == held[1]
    if held is not None and same:
        low, high = sorted((held[0], report_date))
        conn.execute("drop table if exists gate_migrated_keys, gate_migrated_delta")
        conn.execute(with_relations(CHANGED_KEYS), {"low": low, "high": high})
        conn.execute("analyze gate_migrated_keys")
        conn.execute(
            f"""
            create temporary table gate_migrated_delta on commit drop as
            select party_id, eligible_from, kind, sum(installations)::bigint as installations from (
                select party_id, eligible_from, kind, installations
                from ({_contributions(((report_date, 1), (held[0], -1)), True)}) as moved
                union all
                select party_id, eligible_from, kind, installations from audit.gate_migrated_by_party
            ) as counted
            group by party_id, eligible_from, kind
            having sum(installations) <> 0
            """
        )
        conn.execute("delete from audit.gate_migrated_by_party")
        conn.execute("insert into audit.gate_migrated_by_party select * from gate_migrated_delta")
        how = f"moved from {held[0]}"
    else:
        conn.execute("delete from audit.gate_migrated_by_party")
        conn.execute(
            f"insert into audit.gate_migrated_by_party (party_id, eligible_from, kind, installations) "
            f"{_contributions(((report_date, 1),), False)}"
        )
        how = "recomputed"
    conn.execute(
        "insert into audit.gate_migrated_state (report_date, deliveries) values "
        f"(%(day)s, ({DELIVERIES})) on conflict (singleton) do update set "
        "report_date = excluded.report_date, deliveries = excluded.deliveries",
        {"day": report_date},
    )
    return how
