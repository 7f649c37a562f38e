"""`did you mean 'nodes'?` for an unknown key, fast enough for 100,000 of them.

The answer is difflib.get_close_matches(key, known keys, n=1, cutoff=0.6) on the
lower-cased keys, exactly; what is added are cheaper upper bounds of the ratio that
rule most known keys out before difflib's own (per-character, in Python) bounds run:
a file of 70,000 unknown keys otherwise spends seconds there.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from difflib import SequenceMatcher

CUTOFF = 0.6  # difflib's default: a ratio of at least 0.6


# Letter counts of a word against every known key at once: one integer holds a
# FIELD_BITS-wide counter per known key (SWAR), so a word costs one sum, not a loop.
FIELD_BITS = 16


@dataclass(frozen=True, eq=False)  # hashed by identity: one per key set
class _Known:
    spelling: dict[str, str]  # lower-cased key -> the key
    keys: list[str]  # lower-cased, sorted
    letters: dict[str, int]  # a letter -> 1 in the field of each key that has it
    high: int  # the top bit of every field


@functools.cache
def _known(allowed: frozenset[str]) -> _Known:
    spelling = {k.lower(): k for k in sorted(allowed)}
    keys = sorted(spelling)
    letters: dict[str, int] = {}
    for i, key in enumerate(keys):
        for letter in set(key):
            letters[letter] = letters.get(letter, 0) + (1 << (FIELD_BITS * i))
    high = sum(1 << (FIELD_BITS * i + FIELD_BITS - 1) for i in range(len(keys)))
    return _Known(spelling, keys, letters, high)


@functools.lru_cache(maxsize=1024)
def _lifts(known: _Known, size: int) -> int:
    """Per field, what lifts a count of at least the least number of a word's letters
    found in that key that can still reach CUTOFF (both of difflib's cheap bounds: the
    shorter length, and letters found) to the field's top bit; 0 where none can."""
    lift, top = 0, 1 << (FIELD_BITS - 1)
    for i, key in enumerate(known.keys):
        total = size + len(key)
        if 2.0 * min(size, len(key)) / total < CUTOFF:
            continue
        least = next(n for n in range(total + 1) if 2.0 * n / total >= CUTOFF)
        lift += (top - least) << (FIELD_BITS * i)
    return lift


def suggest(key: str, allowed: set[str]) -> str:
    known = _known(frozenset(allowed))
    close = _closest(key.lower(), known)
    if close is not None:
        return f"did you mean {known.spelling[close]!r}?"
    return "known keys: " + ", ".join(sorted(allowed))


def _closest(word: str, known: _Known) -> str | None:
    """get_close_matches(word, known keys, n=1, cutoff=CUTOFF)[0], or None."""
    size = len(word)
    lift = _lifts(known, size) if size < 1 << (FIELD_BITS - 2) else 0
    if not lift:
        return None  # no key is near the word's length
    found = sum(map(known.letters.get, word, itertools.repeat(0)))
    passed = (found + lift) & known.high
    best: tuple[float, str] | None = None
    matcher: SequenceMatcher[str] | None = None
    for i, candidate in enumerate(known.keys):
        if not passed >> (FIELD_BITS * i + FIELD_BITS - 1) & 1:
            continue
        if matcher is None:
            matcher = SequenceMatcher()
            matcher.set_seq2(word)
        matcher.set_seq1(candidate)
        if matcher.quick_ratio() >= CUTOFF:
            ratio = matcher.ratio()
            if ratio >= CUTOFF and (best is None or (ratio, candidate) > best):
                best = (ratio, candidate)
    return best[1] if best else None
