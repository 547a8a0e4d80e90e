"""The simulation's state: its event queue, what DCC and the parties keep, the records in flight."""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple

from .clock import day_length, local_midnight
from .knobs import COF_INTERVAL, PARTIES, PARTY_BY_ID, WARMUP_DAYS
from .population import Installation, Inventory
from .writer import DropWriter


class Request(NamedTuple):
    """One MA record as a party sends it."""

    index: int | None  # type: ignore[assignment]  # None: an installation id unknown to the inventory
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


class SimulationState:
    """The state every part of the simulation shares, and the queue of timed events."""

    def __init__(self, writer: DropWriter, start: date, days: int, installations: int, seed: int, volume: float):
        self.w = writer
        self.rng = random.Random(seed)
        self.inv = Inventory(seed, installations, start)
        self.start = start
        self.first_day = start - timedelta(days=WARMUP_DAYS)
        self.last_day = start + timedelta(days=days - 1)
        self.rename_day = start + timedelta(days=days // 2)
        self.volume = volume  # new MA requests a day
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

    def _queue_retry(self, party: str, index: int, ready: int) -> None:
        self.seq += 1
        heapq.heappush(self.retries[party], (ready, self.seq, index))
