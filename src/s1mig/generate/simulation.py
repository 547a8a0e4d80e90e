"""The simulation: the base written first, then each day's plan, capacity and inventory changes."""

from __future__ import annotations

import heapq
import sys
from datetime import date, timedelta
from typing import Any

from s1mig.contract import DMIN

from .authorisations import Authorisations
from .clock import day_length, fmt_ts, local_midnight
from .draws import stochastic_round
from .knobs import (
    ALLOCATION_LEAD_DAYS,
    COF_INTERVAL,
    HOUR,
    PARTIES,
    PARTY_BY_ID,
    RENAME,
    REVISION_LEAD_DAYS,
    REVISION_RATE,
)
from .population import change_supplier


class Simulation(Authorisations):
    """Runs the event queue until the end of the last day."""

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
        quota = stochastic_round(self.rng, self.volume * self.shares[party] * self.rng.uniform(0.85, 1.15))
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
        for _ in range(stochastic_round(self.rng, max(self.volume * 0.01, floor))):
            self.push(self.time_in(d), self._exclude_before_migration)
        for _ in range(stochastic_round(self.rng, max(self.volume * 0.01, floor))):
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

    def _allocate(self, t: int, arg: tuple[str, date, bool]) -> None:
        party, migration_date, revision = arg
        key = (party, migration_date)
        demand = self.demand.get(key)
        if demand is None or not revision:
            expected = self.volume * self.shares[party] * 1.15
            demand = max(1, stochastic_round(self.rng, expected * self.rng.uniform(0.9, 1.3)))
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
