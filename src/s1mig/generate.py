"""Synthetic daily drops for the raw extract contract (spec section 2).

`generate` simulates the SMETS1 migration process of spec section 1 as a discrete-event
simulation and streams every record into the drop of the Europe/London day of its time
column, so files are written in time order and nothing but the in-flight state is held
in memory:

* **Inventory.** An installation's attributes (cohort, group, fuels, suppliers,
  eligibility, whether its devices are faulty) are a pure function of (seed, index), so
  the base of any size is written without being stored. Only a change of supplier keeps
  the new version in memory. A single cursor walks the inventory in index order and
  hands each eligible installation to the party that will request it (its *lead*
  supplier); installations not yet eligible wait in a small heap until they are.
* **Parties** send a few MA files a day; DCC validates every record (MA01-MA06),
  schedules the accepted ones as attempts for a migration date within the party's
  capacity allocation, runs each attempt through the four stages and finally queues a
  COF record per responsible party, dispatched in per-party COF files every few hours.
* **Failures** are retried by the requesting party (attempt_no + 1) until the fifth
  failure excludes the installation; some failures lead to other exclusions.
* **History.** The process starts WARMUP_DAYS before `start`; that history (and the
  allocations made before it) goes in the first drop, so the first report dates already
  have retries, completions and cumulative totals. Rare outcomes (each reason code, a
  tie, each exclusion after a failure) are made likely the first time they can occur,
  so even a small run shows every one of them.

All randomness comes from one `random.Random(seed)` consumed in event order, plus a
hash of (seed, index) for the inventory, so a seed gives byte-identical drops.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import json
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from s1mig.contract import EXTRACTS, LOCAL_TZ, PASS_STEP, REASON_CODES, STAGES

LONDON = ZoneInfo(LOCAL_TZ)
HOUR = 3600

# ----------------------------------------------------------------------------- model knobs

WARMUP_DAYS = 7  # the process starts before `start`; that history goes in the first drop
ALLOCATION_LEAD_DAYS = 4  # allocations for migration date M are made on day M-4 ...
REVISION_LEAD_DAYS = 2  # ... and some are revised on day M-2
REVISION_RATE = 0.35
DAILY_VOLUME_RATE = 0.05  # new MA requests a day, as a share of the installation base
MAX_DAILY_VOLUME = 60_000.0
REQUEST_LEAD_WEIGHTS = ((1, 60), (2, 30), (3, 10))  # days between MA receipt and migration
OVERSHOOT_RATE = 0.15  # a party asks for a date its allocation has no room on (MA06)
FAILURE_RATE = 0.17  # share of attempts of a sound installation that fail
DOOMED_PER_MILLE = 50  # installations whose every attempt fails (retryable reasons)
MAX_FAILURES = 5
TIE_RATE = 0.4  # share of DTP02/DTP03 failures of dual-fuel meters that fail both at once
COF_DELAY_RATE = 0.25  # split-supplier attempts whose second COF comes about a day later
COF_INTERVAL = 3 * HOUR
STAGE_GAPS = ((0, 1), (300, 1800), (600, 3600), (300, 1800))  # seconds before each stage
DMIN = 100
INJECTED_ERROR_RATE = 0.015  # per MA record and injected error code
INJECTED_ERROR_FLOOR = 0.06  # per MA file and injected error code

# Failure reasons of a failing attempt: relative weights (stage failures and COF01).
FAILURE_WEIGHTS = {
    "MCF01": 6,
    "MCF02": 3,
    "MCF03": 5,
    "MVF01": 4,
    "MVF02": 7,
    "DTP01": 14,
    "DTP02": 10,
    "DTP03": 8,
    "DTP04": 4,
    "COM01": 9,
    "COM02": 8,
    "COF01": 12,
}
# Faulty installations fail again and again, always for a retryable reason.
DOOMED_REASONS = ("MCF01", "MCF03", "MVF02", "DTP02", "DTP03", "COM01", "COM02", "COF01")


@dataclass(frozen=True)
class PartySpec:
    party_id: str
    name: str
    affiliate_group: str
    elec_weight: int  # relative share of electricity supply (0: not an electricity supplier)
    gas_weight: int  # relative share of gas supply (0: not a gas supplier)


PARTIES = (
    PartySpec("ALPE01", "Alpha Energy Supply Ltd", "ALPHA", 24, 20),
    PartySpec("ALPG01", "Alpha Gas Ltd", "ALPHA", 0, 10),
    PartySpec("BEAC01", "Beacon Power & Gas, plc", "BEACON", 18, 16),
    PartySpec("CEDR01", "Cedar Energy Ltd", "CEDAR", 14, 14),
    PartySpec("DELT01", "Delta Utilities Ltd", "DELTA", 14, 14),
    PartySpec("DELT02", "Delta Home Services Ltd", "DELTA", 8, 0),
    PartySpec("EVGR01", "Evergreen Power Ltd", "EVERGREEN", 12, 14),
    PartySpec("FULC01", "Fulcrum Energy Ltd", "FULCRUM", 10, 12),
)
PARTY_BY_ID = {p.party_id: p for p in PARTIES}
RENAME = ("DELT01", "Delta Energy Ltd")  # takes effect mid-period

# (cohort, group_id, weight per mille, eligible_from in days from `start`); DA = MOC Secure.
GROUPS = (
    ("IOC", "IA", 90, -120),
    ("IOC", "IB", 60, -90),
    ("MOC", "DA", 165, -60),
    ("MOC", "MB", 220, -30),
    ("MOC", "MC", 165, 1),
    ("FOC", "FA", 150, -10),
    ("FOC", "FB", 90, 3),
    ("FOC", "FC", 60, 14),
)
ELEC_ONLY_PCT, GAS_ONLY_PCT = 40, 15  # the rest (45%) is dual fuel
SAME_SUPPLIER_PCT = 70  # of dual-fuel installations whose electricity supplier also sells gas
GAS_LEADS_PER_TEN = 3  # of split-supplier installations, the gas supplier requests migration

# Bijective scramblers (multipliers coprime with the modulus) give unique identifiers.
ID_MOD, ID_MULT = 10**10, 7_919_777_333
MPAN_MOD, MPAN_MULT = 10**11, 48_271_000_007
MPRN_MOD, MPRN_MULT, MPRN_MIN = 10**10 - 10**5, 1_000_003, 10**5
M64 = (1 << 64) - 1


# ----------------------------------------------------------------------------- helpers


def _mix(x: int) -> int:
    """splitmix64 finaliser: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


@lru_cache(maxsize=4096)
def local_midnight(d: date) -> int:
    """D 00:00 Europe/London as epoch seconds."""
    return int(datetime(d.year, d.month, d.day, tzinfo=LONDON).timestamp())


def day_length(d: date) -> int:
    return local_midnight(d + timedelta(days=1)) - local_midnight(d)


def fmt_ts(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _cumulative(weights: Sequence[tuple[str, int]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    keys, cum, total = [], [], 0
    for key, weight in weights:
        if weight > 0:
            total += weight
            keys.append(key)
            cum.append(total)
    return tuple(keys), tuple(cum)


def _pick(table: tuple[tuple[str, ...], tuple[int, ...]], r: float) -> str:
    """The key of a cumulative weight table at r in [0, 1)."""
    keys, cum = table
    x = r * cum[-1]
    for key, upto in zip(keys, cum, strict=True):
        if x < upto:
            return key
    return keys[-1]


def _per_mille(table: tuple[tuple[str, ...], tuple[int, ...]]) -> tuple[str, ...]:
    """A weight table as a lookup by r in 0..999: one index instead of a scan."""
    return tuple(_pick(table, r / 1000) for r in range(1000))


def _choose(rng: random.Random, weights: dict[str, int], exclude: set[str]) -> str | None:
    table = _cumulative([(k, w) for k, w in weights.items() if k not in exclude])
    return _pick(table, rng.random()) if table[0] else None


def _stochastic_round(rng: random.Random, x: float) -> int:
    whole = int(x)
    return whole + (rng.random() < x - whole)


ELEC_WEIGHTS = {p.party_id: p.elec_weight for p in PARTIES}
GAS_WEIGHTS = {p.party_id: p.gas_weight for p in PARTIES}
ELEC_BY_MILLE = _per_mille(_cumulative(list(ELEC_WEIGHTS.items())))
GAS_BY_MILLE = _per_mille(_cumulative(list(GAS_WEIGHTS.items())))
# Gas suppliers a split-supplier installation may have: not affiliated with the elec supplier.
SPLIT_GAS_BY_MILLE = {
    e.party_id: _per_mille(
        _cumulative([(g.party_id, g.gas_weight) for g in PARTIES if g.affiliate_group != e.affiliate_group])
    )
    for e in PARTIES
}
GROUP_BY_MILLE = _per_mille(_cumulative([(g, w) for _, g, w, _ in GROUPS]))
COHORT_OF_GROUP = {g: c for c, g, _, _ in GROUPS}


def _affiliates(party_id: str) -> set[str]:
    group = PARTY_BY_ID[party_id].affiliate_group
    return {p.party_id for p in PARTIES if p.affiliate_group == group}


# ----------------------------------------------------------------------------- inventory


@dataclass(frozen=True, slots=True)
class Installation:
    index: int
    installation_id: str
    cohort: str
    group_id: str
    mpan: str | None
    mprn: str | None
    elec_supplier_id: str | None
    gas_supplier_id: str | None
    eligible_from: date
    lead: str  # the supplier that requests its migration
    doomed: bool  # faulty devices: every attempt fails

    def row(self, effective_from: str) -> tuple[Any, ...]:
        """The installations extract row of this version, effective from a formatted time."""
        return (
            self.installation_id,
            self.cohort,
            self.group_id,
            self.mpan,
            self.mprn,
            self.elec_supplier_id,
            self.gas_supplier_id,
            self.eligible_from.isoformat(),
            effective_from,
        )

    def responsible(self) -> tuple[str, ...]:
        """Distinct responsible parties, electricity first (spec section 3)."""
        parties = [p for p in (self.elec_supplier_id, self.gas_supplier_id) if p]
        return tuple(dict.fromkeys(parties))

    def supplies(self, party_id: str) -> bool:
        return party_id in (self.elec_supplier_id, self.gas_supplier_id)

    def mpxn_for(self, party_id: str) -> str:
        """The MPxN a party quotes in an MA record: its own fuel's, electricity first."""
        if self.mpan and self.elec_supplier_id == party_id:
            return self.mpan
        if self.mprn and self.gas_supplier_id == party_id:
            return self.mprn
        return self.mpan or self.mprn or ""


class Inventory:
    """The SMETS1 installation base: attributes derived from (seed, index) on demand."""

    def __init__(self, seed: int, size: int, start: date):
        self.size = size
        self.key = _mix(seed & M64)
        self.id_offset = _mix(self.key ^ 1) % ID_MOD
        self.mpan_offset = _mix(self.key ^ 2) % MPAN_MOD
        self.mprn_offset = _mix(self.key ^ 3) % MPRN_MOD
        self.eligible = {g: start + timedelta(days=off) for _, g, _, off in GROUPS}
        self.overrides: dict[int, Installation] = {}  # current version after a change of supplier

    def installation_id(self, index: int) -> str:
        """Unique per index; an index >= size gives an id unknown to the inventory."""
        return f"S1{(index * ID_MULT + self.id_offset) % ID_MOD:010d}"

    def get(self, index: int) -> Installation:
        return self.overrides.get(index) or self.base(index)

    def base(self, index: int) -> Installation:
        h = _mix(self.key ^ _mix(index))
        h, r_fuel = divmod(h, 100)
        h, r_group = divmod(h, 1000)
        h, r_elec = divmod(h, 1000)
        h, r_gas = divmod(h, 1000)
        h, r_same = divmod(h, 100)
        h, r_doom = divmod(h, 1000)
        h, r_lead = divmod(h, 10)
        h, r_dist = divmod(h, 14)
        group_id = GROUP_BY_MILLE[r_group]
        has_elec = r_fuel >= GAS_ONLY_PCT
        has_gas = r_fuel < GAS_ONLY_PCT or r_fuel >= GAS_ONLY_PCT + ELEC_ONLY_PCT
        elec = ELEC_BY_MILLE[r_elec] if has_elec else None
        gas = None
        if has_gas and elec is None:
            gas = GAS_BY_MILLE[r_gas]
        elif has_gas and elec is not None:
            same = r_same < SAME_SUPPLIER_PCT and GAS_WEIGHTS[elec] > 0
            gas = elec if same else SPLIT_GAS_BY_MILLE[elec][r_gas]
        split = gas is not None and elec is not None and gas != elec
        lead = gas if (elec is None or (split and r_lead < GAS_LEADS_PER_TEN)) else elec
        assert lead is not None
        return Installation(
            index=index,
            installation_id=self.installation_id(index),
            cohort=COHORT_OF_GROUP[group_id],
            group_id=group_id,
            mpan=f"{10 + r_dist}{(index * MPAN_MULT + self.mpan_offset) % MPAN_MOD:011d}" if has_elec else None,
            mprn=str((index * MPRN_MULT + self.mprn_offset) % MPRN_MOD + MPRN_MIN) if has_gas else None,
            elec_supplier_id=elec,
            gas_supplier_id=gas,
            eligible_from=self.eligible[group_id],
            lead=lead,
            doomed=r_doom < DOOMED_PER_MILLE,
        )

    def lead_shares(self, sample: int = 5000) -> dict[str, float]:
        """Each party's share of the installations it requests, from the first indices."""
        n = max(1, min(sample, self.size))
        counts = dict.fromkeys(PARTY_BY_ID, 0)
        for i in range(n):
            counts[self.base(i).lead] += 1
        return {p: c / n for p, c in counts.items()}


def change_supplier(rng: random.Random, inst: Installation) -> Installation | None:
    """The installation after a change of supplier (one or both fuels switch), if any."""
    elec, gas = inst.elec_supplier_id, inst.gas_supplier_id
    if elec and gas and elec == gas:
        dual_fuel = {p: w for p, w in ELEC_WEIGHTS.items() if GAS_WEIGHTS[p]}
        elec = gas = _choose(rng, dual_fuel, {elec})
    elif elec and gas and rng.random() < 0.5:
        gas = _choose(rng, GAS_WEIGHTS, {gas} | _affiliates(elec))
    elif elec and gas:
        elec = _choose(rng, ELEC_WEIGHTS, {elec} | _affiliates(gas))
    elif elec:
        elec = _choose(rng, ELEC_WEIGHTS, {elec})
    else:
        gas = _choose(rng, GAS_WEIGHTS, {gas} if gas else set())
    if (inst.mpan and elec is None) or (inst.mprn and gas is None):
        return None  # nobody to switch to
    gas_led = inst.gas_supplier_id is not None and inst.lead == inst.gas_supplier_id
    lead = gas if (gas_led or elec is None) else elec
    assert lead is not None
    return replace(inst, elec_supplier_id=elec, gas_supplier_id=gas, lead=lead)


# ----------------------------------------------------------------------------- drop writer


class _HashingFile:
    """A text sink for csv.writer that writes UTF-8 bytes and hashes them on the way."""

    def __init__(self, path: Path):
        self.fh = open(path, "wb", buffering=1 << 20)  # closed by close()
        self.sha = hashlib.sha256()

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.sha.update(data)
        self.fh.write(data)

    def close(self) -> str:
        self.fh.close()
        return self.sha.hexdigest()


class DropWriter:
    """Routes each record to the drop of the local day of its time; one drop open at a time.

    Records must arrive in time order (earlier drops are closed for good); anything
    before the first day goes in the first drop.
    """

    def __init__(self, out: Path, start: date, days: int, progress: bool):
        self.out = out
        self.dates = [start + timedelta(days=k) for k in range(days)]
        self.bounds = [local_midnight(d) for d in self.dates] + [local_midnight(start + timedelta(days=days))]
        self.progress = progress
        self.current = -1
        self.drops: list[Path] = []
        self.files: dict[str, _HashingFile] = {}
        self.writers: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        self._open(0)

    @property
    def end(self) -> int:
        """End of the last day: records from here on belong to later drops."""
        return self.bounds[-1]

    def write(self, extract: str, t: int, row: Sequence[Any]) -> None:
        if t >= self.bounds[self.current + 1]:
            self._advance(t)
        if self.current > 0 and t < self.bounds[self.current]:
            raise RuntimeError(f"record at {fmt_ts(t)} arrived after its drop was closed")
        self.writers[extract].writerow(row)
        self.rows[extract] += 1

    def finish(self) -> list[Path]:
        self._advance(self.end)
        return self.drops

    def _advance(self, t: int) -> None:
        while self.current < len(self.dates) and t >= self.bounds[self.current + 1]:
            self._close()
            if self.current + 1 < len(self.dates):
                self._open(self.current + 1)
            else:
                self.current += 1

    def _open(self, k: int) -> None:
        self.current = k
        folder = self.out / self.dates[k].isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        for ex in EXTRACTS:
            (folder / f"{ex.name}.csv.gz").unlink(missing_ok=True)  # a stale alternative
            sink = _HashingFile(folder / f"{ex.name}.csv")
            writer = csv.writer(sink, lineterminator="\n")
            writer.writerow(ex.columns)
            self.files[ex.name], self.writers[ex.name], self.rows[ex.name] = sink, writer, 0
        self.drops.append(folder)

    def _close(self) -> None:
        drop_date = self.dates[self.current]
        extracts = [
            {
                "name": ex.name,
                "file": f"{ex.name}.csv",
                "rows": self.rows[ex.name],
                "sha256": self.files[ex.name].close(),
            }
            for ex in EXTRACTS
        ]
        manifest = {"drop_date": drop_date.isoformat(), "extracts": extracts}
        (self.drops[-1] / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if self.progress:
            counts = " ".join(f"{e['name']}={e['rows']}" for e in extracts)
            print(f"generate: drop {drop_date} written: {counts}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- simulation


class Request(NamedTuple):
    """One MA record as a party sends it."""

    index: int | None  # None: an installation id unknown to the inventory
    installation_id: str
    mpxn: str
    requested_for: date
    genuine: bool  # a real request the party follows up after a rejection


@dataclass(slots=True)
class Attempt:
    attempt_id: str
    index: int
    installation: Installation  # the version at scheduled_at
    party_id: str  # the MA's party
    responsible: tuple[str, ...]
    fail_code: str | None  # the reason this attempt will fail, if it does
    tie: bool  # two device-testing failures at the same instant
    cof_fail_party: str | None  # whose COF response fails (COF01)
    delayed_party: str | None  # whose COF comes about a day late
    cof_outstanding: int = 0
    failed: bool = False


Handler = Callable[[int, Any], None]


class Simulation:
    def __init__(self, writer: DropWriter, start: date, days: int, installations: int, seed: int):
        self.w = writer
        self.rng = random.Random(seed)
        self.inv = Inventory(seed, installations, start)
        self.start = start
        self.first_day = start - timedelta(days=WARMUP_DAYS)
        self.last_day = start + timedelta(days=days - 1)
        self.rename_day = start + timedelta(days=days // 2)
        self.volume = min(max(installations * DAILY_VOLUME_RATE, 1.0), MAX_DAILY_VOLUME)
        self.shares = self.inv.lead_shares()
        self.signifier = self._signifiers()
        self.cof_offset = {p.party_id: self.rng.randrange(COF_INTERVAL) for p in PARTIES}
        self.queue: list[tuple[int, int, Handler, Any]] = []
        self.seq = 0
        self.next_attempt = 1_000_000_001  # fixed-width ids sort the same as text and number
        self.next_event = 1_000_000_001
        # inventory walk
        self.cursor = 0
        self.buffers: dict[str, deque[int]] = {p.party_id: deque() for p in PARTIES}
        self.parked: list[tuple[int, int]] = []  # (eligible_from ordinal, index)
        # DCC state
        self.allocation: dict[tuple[str, date], int] = {}
        self.demand: dict[tuple[str, date], int] = {}
        self.used: dict[tuple[str, date], int] = {}
        self.active: set[int] = set()  # authorised and not yet complete
        self.unscheduled: set[int] = set()  # authorised, attempt not yet scheduled
        self.excluded: set[int] = set()
        self.failures: dict[int, int] = {}
        self.cof_pending: dict[str, list[tuple[int, int, Attempt, str]]] = {p.party_id: [] for p in PARTIES}
        self.cof_counter = dict.fromkeys(PARTY_BY_ID, 0)
        # party state
        self.retries: dict[str, list[tuple[int, int, int]]] = {p.party_id: [] for p in PARTIES}
        self.recent_accepted: dict[str, deque[int]] = {p.party_id: deque(maxlen=64) for p in PARTIES}
        self.recent_excluded: dict[str, deque[int]] = {p.party_id: deque(maxlen=64) for p in PARTIES}
        self.recent_scheduled: deque[int] = deque(maxlen=512)
        self.seen: set[str] = set()  # rare outcomes produced so far (see _first)

    # -- plumbing ------------------------------------------------------------------

    def _first(self, outcome: str) -> bool:
        """True the first time a rare outcome is asked about: small runs show each one."""
        first = outcome not in self.seen
        self.seen.add(outcome)
        return first

    def _signifiers(self) -> dict[str, str]:
        """A distinct EUI-64 SEC Party signifier per party."""
        signifiers: dict[str, str] = {}
        for p in PARTIES:
            signifier = ""
            while not signifier or signifier in signifiers.values():
                signifier = "-".join(f"{self.rng.randrange(256):02X}" for _ in range(8))
            signifiers[p.party_id] = signifier
        return signifiers

    def push(self, t: int, handler: Handler, arg: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, handler, arg))

    def time_in(self, d: date) -> int:
        return local_midnight(d) + self.rng.randrange(day_length(d))

    def run(self) -> None:
        self._write_base()
        first_allocation_day = self.first_day - timedelta(days=ALLOCATION_LEAD_DAYS - 1)
        self.push(local_midnight(first_allocation_day), self._plan_day, first_allocation_day)
        while self.queue:
            t, _, handler, arg = heapq.heappop(self.queue)
            if t >= self.w.end:
                break
            handler(t, arg)

    def _write_base(self) -> None:
        """Parties and the full installation base, effective well before the first drop."""
        parties_from = local_midnight(self.start - timedelta(days=400))
        for p in PARTIES:
            self.w.write(
                "parties",
                parties_from,
                (p.party_id, p.name, self.signifier[p.party_id], p.affiliate_group, fmt_ts(parties_from)),
            )
        base_from = local_midnight(self.start - timedelta(days=180))
        base_stamp = fmt_ts(base_from)
        step = 1_000_000
        for i in range(self.inv.size):
            self.w.write("installations", base_from, self.inv.base(i).row(base_stamp))
            if self.w.progress and (i + 1) % step == 0:
                print(f"generate: installation base {i + 1}/{self.inv.size}", file=sys.stderr, flush=True)

    # -- the daily plan ------------------------------------------------------------

    def _plan_day(self, t: int, d: date) -> None:
        self._plan_allocations(d)
        if d >= self.first_day:
            self._release_parked(d)
            for p in PARTIES:
                self._plan_ma_files(p.party_id, d)
                self._plan_cof_dispatch(p.party_id, d)
            self._plan_inventory_changes(d)
            self._prune(d)
        if d == self.rename_day:
            self.push(local_midnight(d) + 9 * HOUR + 1800, self._rename)
        if d < self.last_day:
            nxt = d + timedelta(days=1)
            self.push(local_midnight(nxt), self._plan_day, nxt)

    def _plan_allocations(self, d: date) -> None:
        migration_date = d + timedelta(days=ALLOCATION_LEAD_DAYS)
        for p in PARTIES:
            self.push(self.time_in(d), self._allocate, (p.party_id, migration_date, False))
            if self.rng.random() < REVISION_RATE:
                revise_on = migration_date - timedelta(days=REVISION_LEAD_DAYS)
                self.push(self.time_in(revise_on), self._allocate, (p.party_id, migration_date, True))

    def _plan_ma_files(self, party: str, d: date) -> None:
        quota = _stochastic_round(self.rng, self.volume * self.shares[party] * self.rng.uniform(0.85, 1.15))
        n_files = 2 + self.rng.randrange(3) + min(quota // 2000, 8)
        seconds = sorted(self.rng.sample(range(day_length(d)), n_files))  # distinct file names
        for k, s in enumerate(seconds):
            share = quota // n_files + (k < quota % n_files)
            self.push(local_midnight(d) + s, self._receive_ma, (party, d, share))

    def _plan_cof_dispatch(self, party: str, d: date) -> None:
        t, end = local_midnight(d) + self.cof_offset[party], local_midnight(d + timedelta(days=1))
        while t < end:
            self.push(t, self._dispatch_cof, party)
            t += COF_INTERVAL

    def _plan_inventory_changes(self, d: date) -> None:
        floor = 0.6
        for _ in range(_stochastic_round(self.rng, max(self.volume * 0.01, floor))):
            self.push(self.time_in(d), self._exclude_before_migration)
        for _ in range(_stochastic_round(self.rng, max(self.volume * 0.01, floor))):
            self.push(self.time_in(d), self._change_supplier)

    def _release_parked(self, d: date) -> None:
        horizon = (d + timedelta(days=1)).toordinal()
        while self.parked and self.parked[0][0] <= horizon:
            _, index = heapq.heappop(self.parked)
            self.buffers[self.inv.get(index).lead].append(index)

    def _prune(self, d: date) -> None:
        for table in (self.allocation, self.demand, self.used):
            for key in [k for k in table if k[1] < d]:
                del table[key]

    # -- capacity ------------------------------------------------------------------

    def _allocate(self, t: int, arg: tuple[str, date, bool]) -> None:
        party, migration_date, revision = arg
        key = (party, migration_date)
        demand = self.demand.get(key)
        if demand is None or not revision:
            expected = self.volume * self.shares[party] * 1.15
            demand = max(1, _stochastic_round(self.rng, expected * self.rng.uniform(0.9, 1.3)))
        else:
            demand = max(1, round(demand * self.rng.uniform(0.95, 1.1)))
        allocation = self._allocation_for(demand)
        self.demand[key], self.allocation[key] = demand, allocation
        self.w.write("capacity_allocations", t, (migration_date.isoformat(), party, demand, allocation, fmt_ts(t)))

    def _allocation_for(self, demand: int) -> int:
        floor = min(demand, DMIN)
        r = self.rng.random()
        if r < 0.75:
            return demand
        if r < 0.9:
            return max(floor, round(demand * self.rng.uniform(0.7, 0.95)))
        return int(floor * self.rng.uniform(0.4, 0.9))  # DMIN not met

    # -- MA files ------------------------------------------------------------------

    def _receive_ma(self, t: int, arg: tuple[str, date, int]) -> None:
        party, d, quota = arg
        planned: dict[date, int] = {}  # records of this file per requested date
        requests = self._retries_due(party, t, d, planned)
        requests += self._new_requests(party, quota, d, planned)
        requests = self._with_injected_errors(party, requests, d)
        if not requests:
            return
        self.rng.shuffle(requests)
        name = f"MA_{party}_{self.signifier[party]}_{time.strftime('%Y%m%d_%H%M%S', time.gmtime(t))}"
        accepted: list[tuple[int, Request]] = []
        for no, req in enumerate(requests, start=1):
            code = self._validate(party, req)
            self.w.write(
                "migration_authorisations",
                t,
                (
                    name,
                    no,
                    party,
                    fmt_ts(t),
                    req.installation_id,
                    req.mpxn,
                    req.requested_for.isoformat(),
                    "REJECTED" if code else "ACCEPTED",
                    code,
                ),
            )
            if code is None:
                accepted.append((no, req))
                self._authorise(party, req)
            elif req.genuine:
                self._follow_up_rejection(party, req, code, t)
        if accepted:
            self.push(t + self.rng.randrange(300, 2700), self._schedule, (name, party, accepted))

    def _retries_due(self, party: str, t: int, d: date, planned: dict[date, int]) -> list[Request]:
        heap, due, held = self.retries[party], [], []
        while heap and heap[0][0] <= t:
            index = heapq.heappop(heap)[2]
            when = self._migration_date(party, d, planned, soonest=True)
            if when is None:
                held.append(index)
            else:
                due.append(self._request(party, index, when))
        for index in held:  # no room in the allocation: ask in a later file
            self._queue_retry(party, index, t + self.rng.randrange(4 * HOUR, 12 * HOUR))
        return due

    def _request(self, party: str, index: int, requested_for: date, genuine: bool = True) -> Request:
        inst = self.inv.get(index)
        return Request(index, inst.installation_id, inst.mpxn_for(party), requested_for, genuine)

    def _new_requests(self, party: str, quota: int, d: date, planned: dict[date, int]) -> list[Request]:
        out: list[Request] = []
        buffer = self.buffers[party]
        while len(out) < quota and (buffer or self._walk_inventory(party, d)):
            index = buffer.popleft()
            lead = self.inv.get(index).lead
            if lead != party:  # changed supplier while waiting
                self.buffers[lead].append(index)
                continue
            when = self._migration_date(party, d, planned, soonest=False)
            if when is None:  # the allocation is full: keep it for another day
                buffer.appendleft(index)
                break
            out.append(self._request(party, index, when))
        return out

    def _migration_date(self, party: str, d: date, planned: dict[date, int], soonest: bool) -> date | None:
        """The migration date a party asks for: a day or few ahead, one its allocation has
        room on. When all are full it usually waits, but sometimes asks anyway (MA06)."""
        options = [(d + timedelta(days=k), w) for k, w in REQUEST_LEAD_WEIGHTS]
        free = [(m, w) for m, w in options if self._room(party, m) > planned.get(m, 0)]
        if not free:
            if self.rng.random() >= OVERSHOOT_RATE:
                return None
            free = options
        when = free[0][0] if soonest else self._weighted(free)
        planned[when] = planned.get(when, 0) + 1
        return when

    def _weighted(self, options: list[tuple[date, int]]) -> date:
        x = self.rng.random() * sum(w for _, w in options)
        for value, weight in options:
            x -= weight
            if x < 0:
                return value
        return options[-1][0]

    def _room(self, party: str, migration_date: date) -> int:
        key = (party, migration_date)
        return self.allocation.get(key, 0) - self.used.get(key, 0)

    def _walk_inventory(self, party: str, d: date) -> bool:
        """Advance the inventory cursor until `party` has an installation to request."""
        horizon = d + timedelta(days=1)
        while not self.buffers[party] and self.cursor < self.inv.size:
            inst = self.inv.get(self.cursor)
            if inst.eligible_from > horizon:
                heapq.heappush(self.parked, (inst.eligible_from.toordinal(), self.cursor))
            else:
                self.buffers[inst.lead].append(self.cursor)
            self.cursor += 1
        return bool(self.buffers[party])

    def _with_injected_errors(self, party: str, requests: list[Request], d: date) -> list[Request]:
        """Add the mistakes parties make: unknown ids, others' installations, duplicates..."""

        def count() -> int:
            expected = max(len(requests) * INJECTED_ERROR_RATE, INJECTED_ERROR_FLOOR)
            return _stochastic_round(self.rng, expected)

        tomorrow = d + timedelta(days=1)
        extra: list[Request] = []
        for _ in range(count()):  # MA01
            index = self.inv.size + self.rng.randrange(10**6)
            extra.append(Request(None, self.inv.installation_id(index), self._random_mpan(), tomorrow, False))
        for _ in range(count()):  # MA02
            index = self._someone_elses(party)
            if index is not None:
                extra.append(self._request(party, index, tomorrow, genuine=False))
        pools = (
            (self.recent_accepted[party], self.active),  # MA03: still in flight
            (self.recent_excluded[party], self.excluded),  # MA04
        )
        for pool, still in pools:
            for _ in range(count()):
                index = pool[self.rng.randrange(len(pool))] if pool else None
                if index is not None and index in still:
                    extra.append(self._request(party, index, tomorrow, genuine=False))
        for _ in range(count()):  # MA05: a genuine request with a mistyped MPxN
            if requests:
                k = self.rng.randrange(len(requests))
                requests[k] = requests[k]._replace(mpxn=self._mistype(requests[k].mpxn))
        for _ in range(count()):  # MA06: a genuine request for a date not yet allocated
            if requests:
                k = self.rng.randrange(len(requests))
                too_far = d + timedelta(days=ALLOCATION_LEAD_DAYS + 1 + self.rng.randrange(5))
                requests[k] = requests[k]._replace(requested_for=too_far)
        return requests + extra

    def _random_mpan(self) -> str:
        return f"{self.rng.randrange(10, 24)}{self.rng.randrange(10**11):011d}"

    def _mistype(self, mpxn: str) -> str:
        return mpxn[:-1] + str((int(mpxn[-1]) + 1 + self.rng.randrange(9)) % 10)

    def _someone_elses(self, party: str) -> int | None:
        for _ in range(10):
            index = self.rng.randrange(self.inv.size)
            if not self.inv.get(index).supplies(party):
                return index
        return None

    def _validate(self, party: str, req: Request) -> str | None:
        """DCC's MA validation: the first error code that applies, or None (ACCEPTED)."""
        if req.index is None:
            return "MA01"
        inst = self.inv.get(req.index)
        if req.mpxn not in (inst.mpan, inst.mprn):
            return "MA05"
        if not inst.supplies(party):
            return "MA02"
        if req.index in self.excluded:
            return "MA04"
        if req.index in self.active:
            return "MA03"
        if self._room(party, req.requested_for) <= 0:
            return "MA06"
        return None

    def _authorise(self, party: str, req: Request) -> None:
        assert req.index is not None
        key = (party, req.requested_for)
        self.used[key] = self.used.get(key, 0) + 1
        self.active.add(req.index)
        self.unscheduled.add(req.index)
        self.recent_accepted[party].append(req.index)

    def _follow_up_rejection(self, party: str, req: Request, code: str, t: int) -> None:
        assert req.index is not None
        if code == "MA05":  # corrected and sent again
            self._queue_retry(party, req.index, t + self.rng.randrange(2 * HOUR, 10 * HOUR))
        elif code == "MA06":  # asked again for a later date
            self._queue_retry(party, req.index, t + self.rng.randrange(4 * HOUR, 16 * HOUR))
        elif code == "MA02":  # the responsible supplier takes it over
            lead = self.inv.get(req.index).lead
            self._queue_retry(lead, req.index, t + self.rng.randrange(12 * HOUR, 36 * HOUR))

    def _queue_retry(self, party: str, index: int, ready: int) -> None:
        self.seq += 1
        heapq.heappush(self.retries[party], (ready, self.seq, index))

    # -- attempts and stages -------------------------------------------------------

    def _schedule(self, t: int, arg: tuple[str, str, list[tuple[int, Request]]]) -> None:
        ma_file, party, accepted = arg
        for record_no, req in accepted:
            assert req.index is not None
            self.unscheduled.discard(req.index)
            attempt = self._new_attempt(req.index, party)
            self.w.write(
                "migration_attempts",
                t,
                (
                    attempt.attempt_id,
                    attempt.installation.installation_id,
                    self.failures.get(req.index, 0) + 1,
                    ma_file,
                    record_no,
                    party,
                    fmt_ts(t),
                    req.requested_for.isoformat(),
                ),
            )
            self.recent_scheduled.append(req.index)
            begin = max(self.time_in(req.requested_for), t + 600)
            self.push(begin, self._stage, (attempt, 0))

    def _new_attempt(self, index: int, party: str) -> Attempt:
        inst = self.inv.get(index)
        responsible = inst.responsible()
        code = self._fail_code(inst)
        dual = bool(inst.mpan and inst.mprn)
        attempt = Attempt(
            attempt_id=str(self.next_attempt),
            index=index,
            installation=inst,
            party_id=party,
            responsible=responsible,
            fail_code=code,
            tie=code in ("DTP02", "DTP03") and dual and (self._first("tie") or self.rng.random() < TIE_RATE),
            cof_fail_party=self.rng.choice(responsible) if code == "COF01" else None,
            delayed_party=self.rng.choice(responsible)
            if len(responsible) > 1 and self.rng.random() < COF_DELAY_RATE
            else None,
        )
        self.next_attempt += 1
        return attempt

    def _fail_code(self, inst: Installation) -> str | None:
        def fits(code: str) -> bool:  # a meter command fails only on a meter that exists
            return (code != "DTP02" or inst.mpan is not None) and (code != "DTP03" or inst.mprn is not None)

        if inst.doomed:
            candidates = [c for c in DOOMED_REASONS if fits(c)]
        elif self.rng.random() < FAILURE_RATE:
            candidates = [c for c in FAILURE_WEIGHTS if fits(c)]
        else:
            return None
        unseen = [c for c in candidates if c not in self.seen]
        if unseen and self.rng.random() < 0.5:  # every reason code shows up early
            code = self.rng.choice(unseen)
        elif inst.doomed:
            code = self.rng.choice(candidates)
        else:
            code = _choose(self.rng, {c: FAILURE_WEIGHTS[c] for c in candidates}, set())
        assert code is not None
        self.seen.add(code)
        return code

    def _stage(self, t: int, arg: tuple[Attempt, int]) -> None:
        attempt, k = arg
        stage, code = STAGES[k], attempt.fail_code
        if code and REASON_CODES[code][0] == stage:
            for c in ("DTP02", "DTP03") if attempt.tie else (code,):
                self._event(t, attempt, stage, REASON_CODES[c][1], "FAIL", c)
            self._fail(t, attempt, code)
            return
        self._event(t, attempt, stage, PASS_STEP[stage], "PASS", None)
        if k + 1 < len(STAGES):
            self.push(t + self.rng.randrange(*STAGE_GAPS[k + 1]), self._stage, (attempt, k + 1))
        else:
            self._queue_cof(t, attempt)

    def _event(self, t: int, attempt: Attempt, stage: str, step: int, outcome: str, reason: str | None) -> None:
        self.w.write(
            "migration_events", t, (str(self.next_event), attempt.attempt_id, stage, step, outcome, reason, fmt_ts(t))
        )
        self.next_event += 1

    def _queue_cof(self, t: int, attempt: Attempt) -> None:
        attempt.cof_outstanding = len(attempt.responsible)
        for party in attempt.responsible:
            ready = t + self.rng.randrange(300, HOUR)
            if party == attempt.delayed_party:
                ready += self.rng.randrange(20 * HOUR, 28 * HOUR)
            response = "FAILURE" if party == attempt.cof_fail_party else "SUCCESS"
            self.seq += 1
            heapq.heappush(self.cof_pending[party], (ready, self.seq, attempt, response))

    def _dispatch_cof(self, t: int, party: str) -> None:
        pending = self.cof_pending[party]
        if not pending or pending[0][0] > t:
            return
        self.cof_counter[party] += 1
        counter, signifier = self.cof_counter[party], self.signifier[party]
        name = f"COF_{signifier}_{counter:08d}"
        while pending and pending[0][0] <= t:
            _, _, attempt, response = heapq.heappop(pending)
            failure = response == "FAILURE"
            self.w.write(
                "cof_records",
                t,
                (
                    name,
                    counter,
                    party,
                    signifier,
                    fmt_ts(t),
                    attempt.attempt_id,
                    attempt.installation.installation_id,
                    response,
                    "COF01" if failure else None,
                ),
            )
            if failure:
                self._fail(t, attempt, "COF01")
            else:
                attempt.cof_outstanding -= 1
                if attempt.cof_outstanding == 0 and not attempt.failed:
                    self._succeed(attempt)

    # -- outcomes ------------------------------------------------------------------

    def _succeed(self, attempt: Attempt) -> None:
        self.active.discard(attempt.index)
        self.failures.pop(attempt.index, None)

    def _fail(self, t: int, attempt: Attempt, code: str) -> None:
        if attempt.failed:
            return
        attempt.failed = True
        index = attempt.index
        self.active.discard(index)
        failures = self.failures[index] = self.failures.get(index, 0) + 1
        retryable = REASON_CODES[code][2]
        if failures >= MAX_FAILURES:
            self._exclude_later(t, index, "FIVE_FAILED_ATTEMPTS", 60, 1800)
        elif code == "DTP01" and (self._first("no-wan") or self.rng.random() < 0.3):
            self._exclude_later(t, index, "NO_WAN_ATTEMPTING_MIGRATION", HOUR, 12 * HOUR)
        elif code in ("MCF02", "MVF01") and (self._first("no-keys") or self.rng.random() < 0.5):
            self._exclude_later(t, index, "MISSING_MASTER_KEYS", HOUR, 12 * HOUR)
        elif retryable:
            self._queue_retry(attempt.party_id, index, t + self.rng.randrange(HOUR, 6 * HOUR))

    def _exclude_later(self, t: int, index: int, category: str, lo: int, hi: int) -> None:
        self.push(t + self.rng.randrange(lo, hi), self._exclude, (index, category))

    def _exclude(self, t: int, arg: tuple[int, str]) -> None:
        index, category = arg
        if index in self.excluded:
            return
        self.excluded.add(index)
        self.failures.pop(index, None)
        inst = self.inv.get(index)
        self.w.write("exclusions", t, (inst.installation_id, category, fmt_ts(t)))
        self.recent_excluded[inst.lead].append(index)
        if category != "NO_WAN_BEFORE_MIGRATION" and self.rng.random() < 0.25:
            # the party has not caught up yet and asks again (MA04)
            self._queue_retry(inst.lead, index, t + self.rng.randrange(6 * HOUR, 30 * HOUR))

    def _ahead(self) -> int | None:
        """An installation the inventory walk has not reached yet."""
        window = min(self.inv.size - self.cursor, int(3 * self.volume) + 20)
        return self.cursor + self.rng.randrange(window) if window > 0 else None

    def _exclude_before_migration(self, t: int, _: Any) -> None:
        index = self._ahead()
        if index is not None:
            category = "NO_WAN_BEFORE_MIGRATION" if self.rng.random() < 0.6 else "MISSING_MASTER_KEYS"
            self._exclude(t, (index, category))

    def _change_supplier(self, t: int, _: Any) -> None:
        """A change of supplier: a new installations version effective from t."""
        recent = self.recent_scheduled
        if recent and self.rng.random() < 0.5:
            index: int | None = recent[self.rng.randrange(len(recent))]
        else:
            index = self._ahead()
        if index is None or index in self.unscheduled:
            return  # never between MA acceptance and scheduling
        new = change_supplier(self.rng, self.inv.get(index))
        if new is None:
            return
        self.inv.overrides[index] = new
        self.w.write("installations", t, new.row(fmt_ts(t)))

    def _rename(self, t: int, _: Any) -> None:
        party_id, name = RENAME
        p = PARTY_BY_ID[party_id]
        self.w.write("parties", t, (party_id, name, self.signifier[party_id], p.affiliate_group, fmt_ts(t)))


# ----------------------------------------------------------------------------- entry point


def generate(out: Path, start: date, days: int, installations: int, seed: int, progress: bool = True) -> list[Path]:
    """Write one drop folder per day, `<out>/<YYYY-MM-DD>/`, for start .. start+days-1.

    Each holds manifest.json and the eight extracts of spec section 2. The first drop also
    carries everything before `start`: parties, the installation base and a few days of
    migration history. Returns the drop folders in date order.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if installations < 1:
        raise ValueError("installations must be at least 1")
    out = Path(out)
    writer = DropWriter(out, start, days, progress)
    Simulation(writer, start, days, installations, seed).run()
    return writer.finish()
