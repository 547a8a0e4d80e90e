"""The simulation's knobs: rates and delays, the parties, the cohort groups, identifier scramblers."""

from __future__ import annotations

from dataclasses import dataclass

HOUR = 3600

WARMUP_DAYS = 7  # the process starts before `start`; that history goes in the first drop
ALLOCATION_LEAD_DAYS = 4  # allocations for migration date M are made on day M-4 ...
REVISION_LEAD_DAYS = 2  # ... and some are revised on day M-2
REVISION_RATE = 0.35
REQUEST_LEAD_WEIGHTS = ((1, 60), (2, 30), (3, 10))  # days between MA receipt and migration
OVERSHOOT_RATE = 0.15  # a party asks for a date its allocation has no room on (MA06)
FAILURE_RATE = 0.17  # share of attempts of a sound installation that fail
DOOMED_PER_MILLE = 50  # installations whose every attempt fails (retryable reasons)
TIE_RATE = 0.4  # share of DTP02/DTP03 failures of dual-fuel meters that fail both at once
COF_DELAY_RATE = 0.25  # split-supplier attempts whose second COF comes about a day later
COF_INTERVAL = 3 * HOUR
STAGE_GAPS = ((0, 1), (300, 1800), (600, 3600), (300, 1800))  # seconds before each stage
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
