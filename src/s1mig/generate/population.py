"""The SMETS1 installation base: each installation's attributes derived from (seed, index)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from .draws import M64, choose, cumulative, mix, per_mille
from .knobs import (
    DOOMED_PER_MILLE,
    ELEC_ONLY_PCT,
    GAS_LEADS_PER_TEN,
    GAS_ONLY_PCT,
    GROUPS,
    ID_MOD,
    ID_MULT,
    MPAN_MOD,
    MPAN_MULT,
    MPRN_MIN,
    MPRN_MOD,
    MPRN_MULT,
    PARTIES,
    PARTY_BY_ID,
    SAME_SUPPLIER_PCT,
)

ELEC_WEIGHTS = {p.party_id: p.elec_weight for p in PARTIES}
GAS_WEIGHTS = {p.party_id: p.gas_weight for p in PARTIES}
ELEC_BY_MILLE = per_mille(cumulative(list(ELEC_WEIGHTS.items())))
GAS_BY_MILLE = per_mille(cumulative(list(GAS_WEIGHTS.items())))
# Gas suppliers a split-supplier installation may have: not affiliated with the elec supplier.
SPLIT_GAS_BY_MILLE = {
    e.party_id: per_mille(
        cumulative([(g.party_id, g.gas_weight) for g in PARTIES if g.affiliate_group != e.affiliate_group])
    )
    for e in PARTIES
}
GROUP_BY_MILLE = per_mille(cumulative([(g, w) for _, g, w, _ in GROUPS]))
COHORT_OF_GROUP = {g: c for c, g, _, _ in GROUPS}


def _affiliates(party_id: str) -> set[str]:
    group = PARTY_BY_ID[party_id].affiliate_group
    return {p.party_id for p in PARTIES if p.affiliate_group == group}


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
        self.key = mix(seed & M64)
        self.id_offset = mix(self.key ^ 1) % ID_MOD
        self.mpan_offset = mix(self.key ^ 2) % MPAN_MOD
        self.mprn_offset = mix(self.key ^ 3) % MPRN_MOD
        self.eligible = {g: start + timedelta(days=off) for _, g, _, off in GROUPS}
        self.overrides: dict[int, Installation] = {}  # current version after a change of supplier

    def installation_id(self, index: int) -> str:
        """Unique per index; an index >= size gives an id unknown to the inventory."""
        return f"S1{(index * ID_MULT + self.id_offset) % ID_MOD:010d}"

    def get(self, index: int) -> Installation:
        return self.overrides.get(index) or self.base(index)

    def base(self, index: int) -> Installation:
        h = mix(self.key ^ mix(index))
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
        elec = gas = choose(rng, dual_fuel, {elec})
    elif elec and gas and rng.random() < 0.5:
        gas = choose(rng, GAS_WEIGHTS, {gas} | _affiliates(elec))
    elif elec and gas:
        elec = choose(rng, ELEC_WEIGHTS, {elec} | _affiliates(gas))
    elif elec:
        elec = choose(rng, ELEC_WEIGHTS, {elec})
    else:
        gas = choose(rng, GAS_WEIGHTS, {gas} if gas else set())
    if (inst.mpan and elec is None) or (inst.mprn and gas is None):
        return None  # nobody to switch to
    gas_led = inst.gas_supplier_id is not None and inst.lead == inst.gas_supplier_id
    lead = gas if (gas_led or elec is None) else elec
    assert lead is not None
    return replace(inst, elec_supplier_id=elec, gas_supplier_id=gas, lead=lead)
