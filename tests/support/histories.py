"""Small random migration histories for the property tests (tests/test_properties.py).

A *history* is the life of one SMETS1 installation over a few report dates: its versions
(changes of supplier, of cohort or group), its attempts and retries (attempt_no + 1), the
stage events of each attempt (PASS, FAIL), the COF records of every party (SUCCESS or
FAILURE, of the responsible parties, of a new supplier or of a party not responsible),
MA records (accepted and rejected), exclusions and capacity allocations. Every time is
drawn from a few per-history *anchors* on a grid of interesting instants (local midnight,
the last second of a day, the repeated hour of the BST -> GMT change ...), so ties and
"the same local day / the next day" relations are frequent.

The hypothesis strategy ``history()`` draws one; ``pack`` renders many histories into ONE
set of daily drops, each history on its own installation, attempt, event and MA-record
ids and its own group_id (so the rows of 007 and 010 are per history), sharing a small
pool of parties (COF counters are numbered per party over all histories, in time order,
which keeps every history's meaning: see ``pack``). ``validate`` checks the packed drops
against the contract's section 2 and the v1.1 referential rules, independently of the
pipeline; ``describe`` prints one history as a readable timeline.

Roles, not party ids: an attempt's requester and a COF record's party are stored as roles
('elec' = the electricity supplier at scheduled_at, 'gas_now' = the gas supplier at the
COF's time, 'other' = a party not responsible ...), resolved when rendering, so any part
of a history can be removed (shrinking) and the rest stays valid input.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from s1mig.contract import (
    COHORTS,
    EXCLUSION_CATEGORIES,
    EXTRACTS,
    EXTRACTS_BY_NAME,
    MA_ERROR_CODES,
    PASS_STEP,
    REASON_CODES,
    STAGES,
)
from tests import reference as ref
from tests.support.drops import write_drop

# ============================================================================ the window and the party pool

START = date(2020, 10, 24)  # 24 .. 27 October 2020: 25 October is the 25-hour day (BST -> GMT)
DAYS = 4
DATES = tuple(START + timedelta(days=n) for n in range(DAYS))
BEFORE = START - timedelta(days=1)  # records of this day land in the first drop
BASE_TIME = datetime(2020, 6, 1, tzinfo=UTC)  # every installation's first version


@dataclass(frozen=True)
class PoolParty:
    party_id: str
    signifier: str
    effective_from: datetime


POOL: tuple[PoolParty, ...] = (
    PoolParty("PTYA01", "00-00-00-00-00-00-0A-01", datetime(2020, 1, 1, tzinfo=UTC)),
    PoolParty("PTYB02", "00-00-00-00-00-00-0B-02", datetime(2020, 1, 1, tzinfo=UTC)),
    PoolParty("PTYC03", "00-00-00-00-00-00-0C-03", datetime(2020, 1, 1, tzinfo=UTC)),
    PoolParty("PTYD04", "00-00-00-00-00-00-0D-04", datetime(2020, 1, 1, tzinfo=UTC)),
    # joins on the second date: no files before it; named only by records after 09:00Z that day
    PoolParty("PTYE05", "00-00-00-00-00-00-0E-05", ref.day_start(START + timedelta(days=1)) + timedelta(hours=10)),
)
EARLY = tuple(i for i, p in enumerate(POOL) if p.effective_from <= BASE_TIME)


def parties_at(t: datetime) -> list[int]:
    """Pool indexes of the parties that exist at t."""
    return [i for i, p in enumerate(POOL) if p.effective_from <= t]


def _grid() -> tuple[datetime, ...]:
    """The instants record times are drawn from: for each local day, its first and second
    second, 01:00 and 02:00 after its start (on 25 October the hour 01:00-02:00 local twice),
    morning, noon, evening, and its last hour and last second."""
    out = []
    for d in (BEFORE, *DATES):
        start, end = ref.day_start(d), ref.end_of(d)
        for offset in (0, 1, 3600, 7200, 9 * 3600, 13 * 3600, 20 * 3600):
            out.append(start + timedelta(seconds=offset))
        out += [end - timedelta(hours=1), end - timedelta(seconds=1)]
    return tuple(sorted(set(out)))


GRID = _grid()
GRID_OF_DAY = {d: tuple(t for t in GRID if ref.local_day(t) == d) for d in (BEFORE, *DATES)}


# ============================================================================ the history model


@dataclass(frozen=True)
class Version:
    at: datetime  # effective_from
    elec: int | None  # pool index of the electricity supplier; None = no MPAN
    gas: int | None  # pool index of the gas supplier; None = no MPRN
    cohort: str
    da: bool  # group_id 'DA' (MOC only) instead of the history's own group


@dataclass(frozen=True)
class Event:
    at: datetime
    stage: str
    code: str | None  # None = PASS


@dataclass(frozen=True)
class Cof:
    at: datetime
    role: str  # 'elec' / 'gas': responsible at scheduled_at; 'elec_now' / 'gas_now': supplier at `at`; 'other'
    failure: bool
    file: int = 0  # this history's COF records of one party, time and file number share a file
    other: int = 0  # which party not responsible (role 'other')


@dataclass(frozen=True)
class Attempt:
    at: datetime  # scheduled_at
    scheduled_for: date
    requester: str  # 'elec' or 'gas' (at scheduled_at)
    ma_hours_before: int  # the MA record was received this long before scheduled_at
    own_ma: bool  # False: a retry reuses the previous attempt's MA record (same party)
    events: tuple[Event, ...] = ()
    cofs: tuple[Cof, ...] = ()


@dataclass(frozen=True)
class History:
    versions: tuple[Version, ...]  # versions[0] is effective from BASE_TIME
    eligible_from: date | None
    attempts: tuple[Attempt, ...] = ()
    rejections: tuple[tuple[datetime, int, str], ...] = ()  # (received_at, pool index, MA error code)
    exclusions: tuple[tuple[datetime, str], ...] = ()  # (excluded_at, category)
    allocations: tuple[tuple[int, date, int, int], ...] = ()  # (pool index, migration_date, demand, allocation)

    def size(self) -> int:
        """Records it renders to, roughly (shrinking keeps the smaller)."""
        return (
            len(self.versions)
            + len(self.rejections)
            + len(self.exclusions)
            + len(self.allocations)
            + sum(1 + len(a.events) + len(a.cofs) for a in self.attempts)
        )


# ============================================================================ the strategy

FAIL_CODES = tuple(code for code, (stage, *_rest) in REASON_CODES.items() if stage != "COF")


@st.composite
def history(draw: st.DrawFn) -> History:
    """One installation's history; see the module docstring."""
    # a few days, a few instants in each: same-day and later-day relations and ties are frequent
    anchors: set[datetime] = set()
    for d in draw(st.lists(st.sampled_from((BEFORE, *DATES)), min_size=1, max_size=3, unique=True)):
        anchors |= set(draw(st.lists(st.sampled_from(GRID_OF_DAY[d]), min_size=1, max_size=3, unique=True)))
    when = st.sampled_from(sorted(anchors))

    fuels = draw(st.sampled_from(("split", "single", "split", "elec", "gas")))
    first, second = draw(st.sampled_from(EARLY)), draw(st.sampled_from(EARLY))
    if fuels == "split" and second == first:
        second = EARLY[(EARLY.index(first) + 1) % len(EARLY)]
    elec = first if fuels in ("split", "single", "elec") else None
    gas = {"split": second, "single": first, "gas": first, "elec": None}[fuels]
    cohort = draw(st.sampled_from(COHORTS))
    versions = [Version(BASE_TIME, elec, gas, cohort, cohort == "MOC" and draw(st.booleans()))]
    for at in sorted(set(draw(st.lists(when, max_size=2)))):
        prev = versions[-1]
        existing = parties_at(at)
        change = draw(st.sampled_from(("elec", "gas", "both", "cohort")))
        new_elec, new_gas, new_cohort = prev.elec, prev.gas, prev.cohort
        if change in ("elec", "both") and prev.elec is not None:
            new_elec = draw(st.sampled_from(existing))
        if change in ("gas", "both") and prev.gas is not None:
            new_gas = draw(st.sampled_from(existing))
        if change == "cohort":
            new_cohort = draw(st.sampled_from(COHORTS))
        versions.append(Version(at, new_elec, new_gas, new_cohort, new_cohort == "MOC" and draw(st.booleans())))

    eligible_from = draw(
        st.sampled_from((START - timedelta(days=30), START, DATES[1], DATES[-1], None, DATES[-1] + timedelta(days=1)))
    )

    attempts = []
    attempt_count = draw(st.sampled_from((1, 0, 1, 1, 2, 2, 3, 6)))
    for scheduled_at in sorted(draw(when) for _ in range(attempt_count)):
        plans = (
            ("failure", "failure", "random")
            if attempt_count > 5
            else ("success", "late", "late", "failure", "partial", "random")
        )
        plan = draw(st.sampled_from(plans))
        events: list[Event] = []
        cofs: list[Cof] = []
        core_when = when
        if plan == "late":  # the Success before the last date, so that a later date exists
            early = [t for t in anchors if ref.local_day(max(t, scheduled_at)) < DATES[-1]]
            core_when = st.sampled_from(early) if early else when
        if plan in ("success", "late", "failure", "partial"):  # a COMMISSIONING PASS and COFs, some of them
            if plan in ("success", "late") or draw(st.booleans()):
                events.append(Event(draw(core_when), "COMMISSIONING", None))
            roles = ["elec", "gas"]  # one each when split; a second SUCCESS COF of the party when DUAL
            if plan == "partial":
                roles = draw(st.lists(st.sampled_from(roles), max_size=1))
            elif plan == "failure":
                roles = [role for role in roles if draw(st.booleans())]
            cofs += [Cof(draw(core_when), role, False) for role in roles]
        if plan == "failure":
            code = draw(st.sampled_from((*FAIL_CODES, "COF01")))
            if code == "COF01":
                cofs.append(Cof(draw(when), draw(st.sampled_from(("elec", "gas"))), True))
            else:
                events.append(Event(draw(when), REASON_CODES[code][0], code))
        core = [x.at for x in (*events, *cofs)]
        later = [t for t in GRID if core and ref.local_day(t) > ref.local_day(max(max(core), scheduled_at))]
        if plan == "late" and later:  # a failure on a later date than the (possible) Success
            at = draw(st.sampled_from(later))
            code = draw(st.sampled_from(FAIL_CODES)) if draw(st.booleans()) else "COF01"
            if code == "COF01":
                cofs.append(Cof(at, draw(st.sampled_from(("elec", "gas"))), True, draw(st.integers(0, 1))))
            else:
                events.append(Event(at, REASON_CODES[code][0], code))
        for _ in range(draw(st.integers(0, 3))):  # extra records: late failures, second COFs, other parties ...
            kind = draw(st.sampled_from(("pass", "fail", "cof", "cof_failure")))
            if kind == "pass":
                events.append(Event(draw(when), draw(st.sampled_from(STAGES)), None))
            elif kind == "fail":
                code = draw(st.sampled_from(FAIL_CODES))
                events.append(Event(draw(when), REASON_CODES[code][0], code))
            else:
                role = draw(st.sampled_from(("elec", "gas", "elec_now", "gas_now", "other")))
                cofs.append(
                    Cof(draw(when), role, kind == "cof_failure", draw(st.integers(0, 1)), draw(st.integers(0, 3)))
                )
        attempts.append(
            Attempt(
                scheduled_at,
                draw(st.sampled_from((BEFORE, *DATES))),
                draw(st.sampled_from(("elec", "gas"))),
                draw(st.sampled_from((0, 1, 24))),
                draw(st.booleans()),
                tuple(events),
                tuple(cofs),
            )
        )

    rejections = tuple(
        (draw(when), draw(st.sampled_from(EARLY)), draw(st.sampled_from(tuple(MA_ERROR_CODES))))
        for _ in range(draw(st.integers(0, 1)))
    )
    exclusions = tuple(
        sorted({at: draw(st.sampled_from(EXCLUSION_CATEGORIES)) for at in draw(st.lists(when, max_size=1))}.items())
    )
    allocations = tuple(
        (
            draw(st.sampled_from(EARLY)),
            draw(st.sampled_from(DATES)),
            draw(st.integers(0, 150)),
            draw(st.integers(0, 150)),
        )
        for _ in range(draw(st.integers(0, 1)))
    )
    return History(tuple(versions), eligible_from, tuple(attempts), rejections, exclusions, allocations)


# ============================================================================ rendering and packing


def fmt_ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def installation_id(index: int) -> str:
    return f"S1{index + 1:010d}"


def group_of(index: int) -> str:
    """The history's own group_id: two capitals, never 'DA' (that one is shared by MOC histories)."""
    letters = [chr(65 + a) + chr(65 + b) for a in range(26) for b in range(26)]
    letters.remove("DA")
    return letters[index % len(letters)]


def version_at(versions: Iterable[Version], t: datetime) -> Version:
    return max((v for v in versions if v.at <= t), key=lambda v: v.at)


def responsible(v: Version) -> dict[str, int]:
    """fuel role -> pool index: 'elec' and/or 'gas' (both, possibly the same party)."""
    return {k: p for k, p in (("elec", v.elec), ("gas", v.gas)) if p is not None}


@dataclass
class Rendered:
    """One history's records, with placeholders for what packing numbers across histories."""

    index: int
    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (extract, row)


def render(h: History, index: int) -> Rendered:
    out = Rendered(index)
    iid = installation_id(index)
    mpan, mprn = f"1{index:012d}", f"9{index:09d}"
    own_group = group_of(index)

    def party(i: int) -> PoolParty:
        return POOL[i]

    for v in h.versions:
        out.rows.append(
            (
                "installations",
                {
                    "installation_id": iid,
                    "cohort": v.cohort,
                    "group_id": "DA" if v.da else own_group,
                    "mpan": mpan if v.elec is not None else "",
                    "mprn": mprn if v.gas is not None else "",
                    "elec_supplier_id": party(v.elec).party_id if v.elec is not None else "",
                    "gas_supplier_id": party(v.gas).party_id if v.gas is not None else "",
                    "eligible_from": h.eligible_from.isoformat() if h.eligible_from else "",
                    "effective_from": fmt_ts(v.at),
                },
            )
        )

    ma_no = 0

    def ma_record(pool_index: int, received: datetime, mpxn: str, requested: date, error: str | None) -> int:
        nonlocal ma_no
        ma_no += 1
        p = party(pool_index)
        received = max(received, p.effective_from)
        out.rows.append(
            (
                "migration_authorisations",
                {
                    "ma_file_name": ("MA", p.party_id, received),  # numbered by pack()
                    "ma_record_no": (index, ma_no),
                    "party_id": p.party_id,
                    "received_at": fmt_ts(received),
                    "installation_id": iid,
                    "mpxn": mpxn,
                    "requested_migration_date": requested.isoformat(),
                    "ma_status": "REJECTED" if error else "ACCEPTED",
                    "ma_error_code": error or "",
                },
            )
        )
        return ma_no

    for at, pool_index, code in h.rejections:
        ma_record(pool_index, at, mpan if h.versions[0].elec is not None else mprn, at.date(), code)

    previous: tuple[int, int] | None = None  # (requester pool index, MA record) of the previous attempt
    for n, a in enumerate(h.attempts, start=1):
        aid = f"H{index:05d}A{n}"
        at_sched = version_at(h.versions, a.at)
        roles = responsible(at_sched)
        requester = roles.get(a.requester, next(iter(roles.values())))
        fuel = a.requester if a.requester in roles else next(iter(roles))
        if previous is not None and not a.own_ma and previous[0] == requester:
            record = previous[1]
        else:
            mpxn = mpan if fuel == "elec" else mprn
            record = ma_record(requester, a.at - timedelta(hours=a.ma_hours_before), mpxn, a.scheduled_for, None)
        previous = (requester, record)
        out.rows.append(
            (
                "migration_attempts",
                {
                    "attempt_id": aid,
                    "installation_id": iid,
                    "attempt_no": n,
                    "ma_file_name": (index, record),  # filled in by pack()
                    "ma_record_no": (index, record),
                    "party_id": party(requester).party_id,
                    "scheduled_at": fmt_ts(a.at),
                    "scheduled_for": a.scheduled_for.isoformat(),
                },
            )
        )
        for k, e in enumerate(a.events):
            step = PASS_STEP[e.stage] if e.code is None else REASON_CODES[e.code][1]
            out.rows.append(
                (
                    "migration_events",
                    {
                        "event_id": f"{aid}E{k:02d}",
                        "attempt_id": aid,
                        "stage": e.stage,
                        "step_no": step,
                        "outcome": "PASS" if e.code is None else "FAIL",
                        "reason_code": e.code or "",
                        "event_ts": fmt_ts(max(e.at, a.at)),
                    },
                )
            )
        files_of_attempt: set[tuple] = set()
        for c in a.cofs:
            at = max(c.at, a.at)
            if c.role in ("elec", "gas"):
                pool_index = roles.get(c.role, next(iter(roles.values())))
            elif c.role in ("elec_now", "gas_now"):
                now = responsible(version_at(h.versions, at))
                pool_index = now.get(c.role[:-4], next(iter(now.values())))
            else:
                others = [i for i in parties_at(at) if i not in roles.values()]
                pool_index = others[c.other % len(others)]
            p = party(pool_index)
            key = (p.party_id, at, c.file)
            while key in files_of_attempt:  # one record per attempt per COF file
                key = (key[0], key[1], key[2] + 100)
            files_of_attempt.add(key)
            out.rows.append(
                (
                    "cof_records",
                    {
                        "cof_file_name": ("COF", index, *key),  # numbered by pack()
                        "cof_counter": None,
                        "party_id": p.party_id,
                        "sec_party_signifier": p.signifier,
                        "generated_at": fmt_ts(at),
                        "attempt_id": aid,
                        "installation_id": iid,
                        "response": "FAILURE" if c.failure else "SUCCESS",
                        "reason_code": "COF01" if c.failure else "",
                    },
                )
            )

    for at, category in h.exclusions:
        out.rows.append(
            ("exclusions", {"installation_id": iid, "exclusion_category": category, "excluded_at": fmt_ts(at)})
        )
    for k, (pool_index, migration_date, demand, allocation) in enumerate(h.allocations):
        # unique per history: (migration_date, party, allocated_at) is the extract's key
        allocated_at = max(
            ref.day_start(BEFORE) + timedelta(hours=8, seconds=index * 2 + k), party(pool_index).effective_from
        )
        out.rows.append(
            (
                "capacity_allocations",
                {
                    "migration_date": migration_date.isoformat(),
                    "party_id": party(pool_index).party_id,
                    "demand": demand,
                    "allocation": allocation,
                    "allocated_at": fmt_ts(allocated_at),
                },
            )
        )
    return out


@dataclass
class Packed:
    """Many histories as one landing: the rows of each drop, and who owns what."""

    drops: dict[date, dict[str, list[dict[str, Any]]]]
    histories: dict[int, History]
    rows_of: dict[int, list[tuple[str, dict[str, Any]]]]  # history index -> its final rows
    owner: dict[str, set[int]]  # installation / attempt / event / COF / MA file / group id -> history indexes


def _drop_of(row_time: str) -> date:
    return max(ref.local_day(ref.parse_ts(row_time)), START)


def pack(histories: Iterable[History] | dict[int, History]) -> Packed:
    """Render every history (index i on its own ids) into one set of drops START .. START+DAYS-1.

    Shared across histories: the party pool, MA files (one per party and received_at, its
    records numbered in history order) and COF counters (per party, over every COF file of
    every history, ordered by (generated_at, history, file), so a history's own files keep
    their order and "the lowest counter" means in the pack what it meant alone)."""
    items = dict(histories) if isinstance(histories, dict) else dict(enumerate(histories))
    rendered = [render(h, i) for i, h in sorted(items.items())]

    ma_files: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    ma_of_record: dict[tuple[int, int], tuple[str, int]] = {}
    cof_keys: dict[str, set[tuple]] = defaultdict(set)
    for r in rendered:
        for extract, row in r.rows:
            if extract == "migration_authorisations":
                ma_files[row["ma_file_name"]].append(row["ma_record_no"])
            elif extract == "cof_records":
                _, index, party_id, at, file_no = row["cof_file_name"]
                cof_keys[party_id].add((at, index, file_no))
    for (_, party_id, received), records in ma_files.items():
        signifier = next(p.signifier for p in POOL if p.party_id == party_id)
        name = f"MA_{party_id}_{signifier}_{received.astimezone(UTC):%Y%m%d_%H%M%S}"
        for no, token in enumerate(sorted(records), start=1):
            ma_of_record[token] = (name, no)
    counters = {
        (party_id, *key): n for party_id, keys in cof_keys.items() for n, key in enumerate(sorted(keys), start=1)
    }
    signifiers = {p.party_id: p.signifier for p in POOL}

    drops: dict[date, dict[str, list[dict[str, Any]]]] = {d: {e.name: [] for e in EXTRACTS} for d in DATES}
    for p in POOL:
        row = {
            "party_id": p.party_id,
            "party_name": f"Pool party {p.party_id}",
            "sec_party_signifier": p.signifier,
            "affiliate_group": p.party_id[:3],
            "effective_from": fmt_ts(p.effective_from),
        }
        drops[_drop_of(row["effective_from"])]["parties"].append(row)

    rows_of: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    owner: dict[str, set[int]] = defaultdict(set)
    for r in rendered:
        final = []
        for extract, row in r.rows:
            row = dict(row)
            if extract == "migration_authorisations":
                row["ma_file_name"], row["ma_record_no"] = ma_of_record[row["ma_record_no"]]
                owner[row["ma_file_name"]].add(r.index)
            elif extract == "migration_attempts":
                row["ma_file_name"], row["ma_record_no"] = ma_of_record[row["ma_record_no"]]
                owner[row["attempt_id"]].add(r.index)
            elif extract == "cof_records":
                _, index, party_id, at, file_no = row["cof_file_name"]
                counter = counters[(party_id, at, index, file_no)]
                row["cof_counter"] = counter
                row["cof_file_name"] = f"COF_{signifiers[party_id]}_{counter:08d}"
                owner[row["cof_file_name"]].add(r.index)
            elif extract == "installations":
                owner[row["installation_id"]].add(r.index)
                owner[row["group_id"]].add(r.index)
            elif extract == "migration_events":
                owner[row["event_id"]].add(r.index)
            final.append((extract, row))
            drops[_drop_of(row[EXTRACTS_BY_NAME[extract].time_column])][extract].append(row)
        rows_of[r.index] = final
    return Packed(drops, items, rows_of, dict(owner))


def write_landing(root: Path, packed: Packed) -> Path:
    """One drop folder per date (with its manifest) under root."""
    for d, tables in packed.drops.items():
        write_drop(root, d.isoformat(), tables)
    return root


def to_warehouse(packed: Packed, through: date | None = None) -> ref.Warehouse:
    """The reference's Warehouse of the drops up to `through`, without writing files (the
    same typed values ref.load would read)."""
    tables: dict[str, list[Any]] = {e.name: [] for e in EXTRACTS}
    drops = [d for d in DATES if through is None or d <= through]
    for d in drops:
        for extract in EXTRACTS:
            for row in packed.drops[d][extract.name]:
                values = [ref._typed(c, "" if row.get(c) is None else str(row.get(c))) for c in extract.columns]
                tables[extract.name].append(ref.RECORD[extract.name](*values))
    return ref.Warehouse(tables, drops, {})


# ============================================================================ validity (section 2, v1.1 rules)

PARTY_ID = re.compile(r"[A-Z0-9]{6}")
SIGNIFIER = re.compile(r"([0-9A-F]{2}-){7}[0-9A-F]{2}")
INSTALLATION_ID = re.compile(r"S1[0-9]{10}")


def validate(packed: Packed) -> list[str]:
    """Every way the packed drops break the contract (empty = valid input): formats and
    domains, file names built from their parts, keys, the drop of each record, MA records
    behind attempts, responsible requesters, parties existing at each record's time, COF
    counters and files, DA only with MOC."""
    problems: list[str] = []
    wh = to_warehouse(packed)
    parties: dict[str, list[Any]] = defaultdict(list)
    for p in wh.parties:
        parties[p.party_id].append(p)
        if not PARTY_ID.fullmatch(p.party_id) or not SIGNIFIER.fullmatch(p.sec_party_signifier):
            problems.append(f"party {p}: bad id or signifier")

    def party_exists(party_id: str | None, t: datetime, what: str) -> None:
        if party_id is None:
            return
        if not PARTY_ID.fullmatch(party_id):
            problems.append(f"{what}: party id {party_id!r} is not ^[A-Z0-9]{{6}}$")
        if not any(p.effective_from <= t for p in parties.get(party_id, [])):
            problems.append(f"{what}: party {party_id} does not exist at {t}")

    def signifier_of(party_id: str, t: datetime) -> str | None:
        v = ref.version_at(parties.get(party_id, []), t)
        return v.sec_party_signifier if v else None

    # each record in the drop of its local day (the first drop: or before)
    for d in DATES:
        for extract in EXTRACTS:
            for row in packed.drops[d][extract.name]:
                day = ref.local_day(ref.parse_ts(row[extract.time_column]))
                if not (day == d or (d == DATES[0] and day < d)):
                    problems.append(f"{extract.name} {row}: local day {day} in drop {d}")
    # keys
    for extract, key in (
        ("installations", ("installation_id", "effective_from")),
        ("migration_authorisations", ("ma_file_name", "ma_record_no")),
        ("migration_attempts", ("attempt_id",)),
        ("migration_events", ("event_id",)),
        ("cof_records", ("attempt_id", "cof_file_name")),
        ("capacity_allocations", ("migration_date", "party_id", "allocated_at")),
        ("exclusions", ("installation_id", "excluded_at")),
        ("parties", ("party_id", "effective_from")),
    ):
        seen = defaultdict(int)
        for r in wh.tables[extract]:
            seen[tuple(getattr(r, k) for k in key)] += 1
        problems += [f"{extract}: key {k} occurs {n} times" for k, n in seen.items() if n > 1]

    versions: dict[str, list[Any]] = defaultdict(list)
    for v in wh.installations:
        versions[v.installation_id].append(v)
        if not INSTALLATION_ID.fullmatch(v.installation_id):
            problems.append(f"installation id {v.installation_id!r}")
        if v.group_id == "DA" and v.cohort != "MOC":
            problems.append(f"{v.installation_id}: group DA with cohort {v.cohort}")
        if v.mpan is None and v.mprn is None:
            problems.append(f"{v.installation_id}: neither mpan nor mprn")
        if (v.mpan is None) != (v.elec_supplier_id is None) or (v.mprn is None) != (v.gas_supplier_id is None):
            problems.append(f"{v.installation_id}: supplier present without its MPxN or the reverse")
        if v.mpan is not None and not re.fullmatch(r"[0-9]{13}", v.mpan):
            problems.append(f"{v.installation_id}: mpan {v.mpan}")
        if v.mprn is not None and not re.fullmatch(r"[0-9]{6,10}", v.mprn):
            problems.append(f"{v.installation_id}: mprn {v.mprn}")
        party_exists(v.elec_supplier_id, v.effective_from, f"installation {v.installation_id}")
        party_exists(v.gas_supplier_id, v.effective_from, f"installation {v.installation_id}")

    ma = {}
    ma_files: dict[str, set[tuple]] = defaultdict(set)
    for m in wh.migration_authorisations:
        ma[(m.ma_file_name, m.ma_record_no)] = m
        ma_files[m.ma_file_name].add((m.party_id, m.received_at))
        party_exists(m.party_id, m.received_at, f"MA {m.ma_file_name}/{m.ma_record_no}")
        expected = f"MA_{m.party_id}_{signifier_of(m.party_id, m.received_at)}_{m.received_at:%Y%m%d_%H%M%S}"
        if m.ma_file_name != expected:
            problems.append(f"MA file name {m.ma_file_name} is not {expected}")
        if (m.ma_status == "REJECTED") != (m.ma_error_code is not None):
            problems.append(f"MA {m.ma_file_name}/{m.ma_record_no}: status and error code disagree")
    problems += [
        f"MA file {name}: records disagree on party / received_at" for name, s in ma_files.items() if len(s) > 1
    ]

    attempts = {}
    for a in wh.migration_attempts:
        attempts[a.attempt_id] = a
        m = ma.get((a.ma_file_name, a.ma_record_no))
        if m is None or m.ma_status != "ACCEPTED" or (m.installation_id, m.party_id) != (a.installation_id, a.party_id):
            problems.append(f"attempt {a.attempt_id}: no ACCEPTED MA record of its installation and party")
        party_exists(a.party_id, a.scheduled_at, f"attempt {a.attempt_id}")
        at_sched = ref.version_at(versions[a.installation_id], a.scheduled_at)
        if a.party_id not in {r.party_id for r in ref.responsibilities(at_sched)}:
            problems.append(f"attempt {a.attempt_id}: {a.party_id} is not responsible at scheduled_at")
    numbers = defaultdict(list)
    for a in wh.migration_attempts:
        numbers[a.installation_id].append(a.attempt_no)
    problems += [
        f"{i}: attempt numbers {sorted(n)}" for i, n in numbers.items() if sorted(n) != list(range(1, len(n) + 1))
    ]

    for e in wh.migration_events:
        if e.attempt_id not in attempts:
            problems.append(f"event {e.event_id}: unknown attempt")
        if e.outcome == "PASS" and (e.step_no != PASS_STEP[e.stage] or e.reason_code is not None):
            problems.append(f"event {e.event_id}: PASS step / reason")
        if e.outcome == "FAIL" and REASON_CODES.get(e.reason_code, ())[:2] != (e.stage, e.step_no):
            problems.append(f"event {e.event_id}: FAIL code / stage / step")

    cof_files: dict[str, set[tuple]] = defaultdict(set)
    by_party: dict[str, dict[int, set[datetime]]] = defaultdict(lambda: defaultdict(set))
    for c in wh.cof_records:
        cof_files[c.cof_file_name].add((c.cof_counter, c.party_id, c.sec_party_signifier, c.generated_at))
        by_party[c.party_id][c.cof_counter].add(c.generated_at)
        party_exists(c.party_id, c.generated_at, f"COF {c.cof_file_name}")
        if c.sec_party_signifier != signifier_of(c.party_id, c.generated_at):
            problems.append(f"COF {c.cof_file_name}: signifier is not the party's")
        if c.cof_file_name != f"COF_{c.sec_party_signifier}_{c.cof_counter:08d}":
            problems.append(f"COF file name {c.cof_file_name} is not built from its signifier and counter")
        a = attempts.get(c.attempt_id)
        if a is None or a.installation_id != c.installation_id:
            problems.append(f"COF {c.cof_file_name}: attempt {c.attempt_id} unknown or of another installation")
        if (c.response == "FAILURE") != (c.reason_code is not None):
            problems.append(f"COF {c.cof_file_name}: response and reason code disagree")
    problems += [f"COF file {name}: records disagree {s}" for name, s in cof_files.items() if len(s) > 1]
    for party_id, files in by_party.items():
        if sorted(files) != list(range(1, len(files) + 1)):
            problems.append(f"party {party_id}: COF counters {sorted(files)} have a gap")
        times = [min(files[n]) for n in sorted(files)]
        if times != sorted(times):
            problems.append(f"party {party_id}: a higher COF counter generated before a lower one")
    for x in wh.capacity_allocations:
        party_exists(x.party_id, x.allocated_at, "capacity allocation")
    return problems


# ============================================================================ description


def describe(packed: Packed, index: int) -> str:
    """One history as a timeline of its records (times also in local time, with the report
    date they belong to), and what the reference says of each attempt on each date."""
    lines = [f"history {index} (installation {installation_id(index)}, group {group_of(index)}):"]
    events = []
    for extract, row in packed.rows_of[index]:
        t = ref.parse_ts(row[EXTRACTS_BY_NAME[extract].time_column])
        shown = {k: v for k, v in row.items() if v not in ("", None) and k != EXTRACTS_BY_NAME[extract].time_column}
        events.append((t, extract, shown))
    for t, extract, shown in sorted(events, key=lambda e: e[0]):
        local = t.astimezone(ref.LONDON)
        lines.append(f"  {fmt_ts(t)} ({local:%m-%d %H:%M:%S %Z}, D={ref.local_day(t)})  {extract}: {shown}")
    attempt_ids = [row["attempt_id"] for extract, row in packed.rows_of[index] if extract == "migration_attempts"]
    if attempt_ids:
        wh = to_warehouse(packed)
        for d in DATES:
            m = ref.Model(wh, d)
            states = {av.attempt.attempt_id: av.completion for av in m.attempts if av.attempt.attempt_id in attempt_ids}
            said = ", ".join(
                f"{aid}: "
                + ("awaiting" if c is None else f"{c.status} at {fmt_ts(c.completed_at)} {c.reason_code or ''}")
                for aid, c in states.items()
            )
            lines.append(f"  reference as at end of {d}: {said or 'no attempt yet'}")
    return "\n".join(lines)


# ============================================================================ what a pack exercises


def coverage(packed: Packed) -> dict[str, int]:
    """How often the pack holds each case the property test is meant to exercise, judged by
    the reference as at end of the last date."""
    wh = to_warehouse(packed)
    m = ref.Model(wh, DATES[-1])
    events: dict[str, list[Any]] = defaultdict(list)
    for e in wh.migration_events:
        events[e.attempt_id].append(e)
    versions: dict[str, list[Any]] = defaultdict(list)
    for v in wh.installations:
        versions[v.installation_id].append(v)
    seen: dict[str, int] = defaultdict(int)
    for av in m.attempts:
        a, c = av.attempt, av.completion
        mine = events[a.attempt_id]
        s = ref.success_time(av.parties, mine, av.cofs)
        responsible = {r.party_id for r in av.parties}
        seen["attempts"] += 1
        seen[f"attempts {c.status if c else 'awaiting outcome'}"] += 1
        seen["split-supplier attempts"] += len(responsible) == 2
        seen["retries (attempt_no > 1)"] += a.attempt_no > 1
        seen["COF of a party not responsible"] += any(x.party_id not in responsible for x in av.cofs)
        passes = [e.event_ts for e in mine if e.stage == "COMMISSIONING" and e.outcome == "PASS"]
        party_cofs = [ref.success_cof(av.cofs, p) for p in responsible]
        if passes and party_cofs and None not in party_cofs:  # every Success condition, whatever the order
            last_cof = max(x.generated_at for x in party_cofs)
            if last_cof < min(passes):
                same_day = ref.local_day(last_cof) == ref.local_day(min(passes))
                seen["PASS after the COF, same day" if same_day else "PASS after the COF, a later day"] += 1
        if c and c.status == "Failure" and s is not None:
            seen["failure at or after the Success time, same day (Failure wins)"] += c.completed_at >= s
        if c and c.status == "Success" and av.failures:
            seen["Success with late failures"] += 1
        if any(f.at == s for f in av.failures) or len({e.event_ts for e in mine}) < len(mine):
            seen["ties (equal timestamps)"] += 1
        changes = [v.effective_from for v in versions[a.installation_id] if v.effective_from > a.scheduled_at]
        if c and changes:
            before = any(t <= c.completed_at for t in changes)
            seen["supplier/version change between scheduling and completion" if before else
                 "supplier/version change after completion"] += 1  # fmt: skip
        if c and ref.local_day(c.completed_at) == date(2020, 10, 25):
            seen["completed on the 25-hour day"] += 1
    split = {av.attempt.attempt_id for av in m.attempts if len({r.party_id for r in av.parties}) == 2}
    for r in ref.late_records(wh, DATES[-1]):
        seen[f"late records ({r.kind})"] += 1
        seen[f"late records ({r.kind}) of a split-supplier attempt"] += r.attempt_id in split
    failures_by_installation: dict[str, int] = defaultdict(int)
    for av in m.attempts:
        failures_by_installation[av.attempt.installation_id] += av.status == "Failure"
    seen["installations with 5+ failed attempts"] = sum(n >= 5 for n in failures_by_installation.values())
    return dict(sorted(seen.items()))


def draw(n: int, seed: int) -> list[History]:
    """n histories drawn by hypothesis from `seed` (the same seed gives the same histories).
    Each is one example of the ``history()`` strategy, so hypothesis's own generation
    (simplest first, boundaries, mutations of earlier examples) decides the variety."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    drawn: list[History] = []

    @with_seed(seed)
    @settings(
        max_examples=n,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(history())
    def collect(h: History) -> None:
        drawn.append(h)

    collect()
    return drawn


# ============================================================================ smaller variants (shrinking)


def reductions(h: History) -> list[History]:
    """Valid, strictly smaller variants of a history, the coarsest first: one attempt kept,
    a part removed (an attempt, a version, an event, a COF record, an MA rejection, an
    exclusion, an allocation), all events or all COF records of an attempt removed. The
    integration test packs them all into one build to find a smaller failing history."""
    out: list[History] = []
    attempts = h.attempts

    def with_attempts(new: Iterable[Attempt]) -> History:
        return replace(h, attempts=tuple(new))

    if len(attempts) > 1:
        out += [with_attempts([a]) for a in attempts]
    out += [with_attempts(attempts[:i] + attempts[i + 1 :]) for i in range(len(attempts))]
    if len(h.versions) > 1:
        out.append(replace(h, versions=h.versions[:1]))
        out += [replace(h, versions=h.versions[:i] + h.versions[i + 1 :]) for i in range(1, len(h.versions))]
    for name in ("rejections", "exclusions", "allocations"):
        items = getattr(h, name)
        out += [replace(h, **{name: items[:i] + items[i + 1 :]}) for i in range(len(items))]
    for i, a in enumerate(attempts):
        for name in ("events", "cofs"):
            items = getattr(a, name)
            if len(items) > 1:
                out.append(with_attempts(attempts[:i] + (replace(a, **{name: ()}),) + attempts[i + 1 :]))
            for j in range(len(items)):
                smaller = replace(a, **{name: items[:j] + items[j + 1 :]})
                out.append(with_attempts(attempts[:i] + (smaller,) + attempts[i + 1 :]))
    seen, unique = {h}, []
    for variant in out:
        if variant not in seen:
            seen.add(variant)
            unique.append(variant)
    return unique
