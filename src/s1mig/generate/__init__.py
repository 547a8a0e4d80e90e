"""Synthetic daily drops for the raw extract contract (spec section 2).

`generate` simulates the SMETS1 migration process of spec section 1 as a discrete-event
simulation and streams every record into the drop of the Europe/London day of its time
column, so files are written in time order and nothing but the in-flight state is held
in memory. The modules, in the order the process runs:

* `population`: the installation base. An installation's attributes (cohort, group,
  fuels, suppliers, eligibility, whether its devices are faulty) are a pure function of
  (seed, index), so a base of any size is written without being stored; only a change of
  supplier keeps the new version in memory. A cursor walks it in index order and hands
  each eligible installation to the party that will request it (its *lead* supplier);
  installations not yet eligible wait in a small heap until they are.
* `simulation`: the process starts WARMUP_DAYS before `start` (that history, and the
  allocations made before it, go in the first drop, so the first report dates already have
  retries, completions and cumulative totals); each day plans the parties' MA files,
  capacity allocations, COF dispatches and inventory changes.
* `parties` and `authorisations`: parties send a few MA files a day (new requests, retries
  and mistakes); DCC validates every record (MA01-MA06) within the party's capacity allocation.
* `attempts`: accepted records are scheduled as attempts and run through the four stages.
* `completion`: a COF record per responsible party, dispatched in per-party COF files every
  few hours; failures are retried (attempt_no + 1) until the fifth excludes the
  installation, and some failures lead to other exclusions.
* `state` (what they share), `writer` (drop folders and manifests), `knobs` (rates,
  parties, groups), `clock` and `draws` (time and randomness).

Rare outcomes (each reason code, a tie, each exclusion after a failure) are made likely the
first time they can occur, so even a small run shows every one of them. All randomness
comes from one `random.Random(seed)` consumed in event order, plus a hash of (seed, index)
for the inventory, so a seed gives byte-identical drops.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from .simulation import Simulation
from .writer import DropWriter

# The volume knobs, read at each call (bench/child.py overrides them on this package).
DAILY_VOLUME_RATE = 0.05  # new MA requests a day, as a share of the installation base
MAX_DAILY_VOLUME = 60_000.0


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
    volume = min(max(installations * DAILY_VOLUME_RATE, 1.0), MAX_DAILY_VOLUME)
    Simulation(writer, start, days, installations, seed, volume).run()
    return writer.finish()
