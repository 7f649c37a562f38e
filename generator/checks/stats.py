"""How many requests a check that depends on random draws sends.

A spreading check (a service must reach every backend) sends up to
`spread_requests(n)` requests, stopping as soon as every backend has answered:
with n backends drawn uniformly at random (kube-proxy's `statistic` ladder,
nftables' `numgen random`), the chance that a healthy lab still misses one is
at most n(1-1/n)^r <= FALSE_FAILURE (the union bound of the coupon collector).
Stopping early does not change that chance: the check fails only when some
backend is unseen after all r requests. A check that needs one given backend
(hairpin: a pod reaching itself) sends up to `hit_requests(n)`.
"""

from __future__ import annotations

import math

FALSE_FAILURE = 1e-6  # per check: the chance that a healthy lab fails a random-draw check


def spread_requests(n: int, p: float = FALSE_FAILURE) -> int:
    """Fewest requests r with n(1-1/n)^r <= p: n uniform backends all answer but with chance p."""
    if n <= 1:
        return 1
    r = max(1, math.ceil(math.log(p / n) / math.log1p(-1 / n)))
    while r > 1 and miss_probability(n, r - 1) <= p:  # float rounding: the least such r
        r -= 1
    while miss_probability(n, r) > p:
        r += 1
    return r


def miss_probability(n: int, r: int) -> float:
    """Upper bound on P(some of n uniform backends unseen after r requests)."""
    return 0.0 if n <= 1 else min(1.0, n * (1 - 1 / n) ** r)


def hit_requests(n: int, p: float = FALSE_FAILURE) -> int:
    """Fewest requests r with (1-1/n)^r <= p: one given backend of n answers but with chance p."""
    if n <= 1:
        return 1
    r = max(1, math.ceil(math.log(p) / math.log1p(-1 / n)))
    while r > 1 and (1 - 1 / n) ** (r - 1) <= p:
        r -= 1
    while (1 - 1 / n) ** r > p:
        r += 1
    return r


def hit_miss_probability(n: int, r: int) -> float:
    """P(one given backend of n unseen after r uniform requests)."""
    return 0.0 if n <= 1 else (1 - 1 / n) ** r
