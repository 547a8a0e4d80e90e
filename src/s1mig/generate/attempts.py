"""Attempts: scheduled from accepted MA records, run through the four stages as migration events."""

from __future__ import annotations

from s1mig.contract import PASS_STEP, REASON_CODES, STAGES

from .clock import fmt_ts
from .completion import Completions
from .draws import choose
from .knobs import COF_DELAY_RATE, DOOMED_REASONS, FAILURE_RATE, FAILURE_WEIGHTS, STAGE_GAPS, TIE_RATE
from .population import Installation
from .state import Attempt, Request


class Attempts(Completions):
    """An attempt per accepted MA record; its fate (pass, or the reason it fails) drawn when scheduled."""

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
        code: str | None
        if unseen and self.rng.random() < 0.5:  # every reason code shows up early
            code = self.rng.choice(unseen)
        elif inst.doomed:
            code = self.rng.choice(candidates)
        else:
            code = choose(self.rng, {c: FAILURE_WEIGHTS[c] for c in candidates}, set())
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
