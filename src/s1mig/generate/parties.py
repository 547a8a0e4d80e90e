"""What parties put in their MA files: new requests, retries, follow-ups and the mistakes they make."""

from __future__ import annotations

import heapq
from datetime import date, timedelta

from .attempts import Attempts
from .draws import stochastic_round
from .knobs import (
    ALLOCATION_LEAD_DAYS,
    HOUR,
    INJECTED_ERROR_FLOOR,
    INJECTED_ERROR_RATE,
    OVERSHOOT_RATE,
    REQUEST_LEAD_WEIGHTS,
)
from .state import Request


class PartyRequests(Attempts):
    """Each party's MA records: the installations it requests next, for dates its allocation has room on."""

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
            return stochastic_round(self.rng, expected)

        tomorrow = d + timedelta(days=1)
        extra: list[Request] = []
        for _ in range(count()):  # MA01
            unknown = self.inv.size + self.rng.randrange(10**6)
            extra.append(Request(None, self.inv.installation_id(unknown), self._random_mpan(), tomorrow, False))
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

    def _follow_up_rejection(self, party: str, req: Request, code: str, t: int) -> None:
        assert req.index is not None
        if code == "MA05":  # corrected and sent again
            self._queue_retry(party, req.index, t + self.rng.randrange(2 * HOUR, 10 * HOUR))
        elif code == "MA06":  # asked again for a later date
            self._queue_retry(party, req.index, t + self.rng.randrange(4 * HOUR, 16 * HOUR))
        elif code == "MA02":  # the responsible supplier takes it over
            lead = self.inv.get(req.index).lead
            self._queue_retry(lead, req.index, t + self.rng.randrange(12 * HOUR, 36 * HOUR))
