"""Completion: COF records queued and dispatched per party, and what follows a success or a failure."""

from __future__ import annotations

import heapq

from s1mig.contract import MAX_FAILED_ATTEMPTS, REASON_CODES

from .clock import fmt_ts
from .knobs import HOUR
from .state import Attempt, SimulationState


class Completions(SimulationState):
    """COF files, and the end of each attempt: success, retry or exclusion."""

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
        if failures >= MAX_FAILED_ATTEMPTS:
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
