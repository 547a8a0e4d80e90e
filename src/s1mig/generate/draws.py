"""Deterministic draws: a 64-bit hash for the inventory, weighted choices for the rest."""

from __future__ import annotations

import random
from collections.abc import Sequence

M64 = (1 << 64) - 1


def mix(x: int) -> int:
    """splitmix64 finaliser: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def cumulative(weights: Sequence[tuple[str, int]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
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


def per_mille(table: tuple[tuple[str, ...], tuple[int, ...]]) -> tuple[str, ...]:
    """A weight table as a lookup by r in 0..999: one index instead of a scan."""
    return tuple(_pick(table, r / 1000) for r in range(1000))


def choose(rng: random.Random, weights: dict[str, int], exclude: set[str]) -> str | None:
    table = cumulative([(k, w) for k, w in weights.items() if k not in exclude])
    return _pick(table, rng.random()) if table[0] else None


def stochastic_round(rng: random.Random, x: float) -> int:
    whole = int(x)
    return whole + (rng.random() < x - whole)
