"""MA files: DCC validates every record a party sends (MA01-MA06) and authorises the accepted ones."""

from __future__ import annotations

import time
from datetime import date

from .clock import fmt_ts
from .parties import PartyRequests
from .state import Request


class Authorisations(PartyRequests):
    """Parties send MA files; DCC accepts (and schedules) or rejects every record."""

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
