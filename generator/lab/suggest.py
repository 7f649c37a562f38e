"""`did you mean 'nodes'?` for an unknown key, fast enough for 100,000 of them.

The answer is difflib.get_close_matches(key, known keys, n=1, cutoff=0.6) on the
lower-cased keys, exactly; what is added are cheaper upper bounds of the ratio that
rule most known keys out before difflib's own (per-character, in Python) bounds run:
a file of 70,000 unknown keys otherwise spends seconds there.
"""

from __future__ import annotations

import functools
import heapq
from difflib import SequenceMatcher

CUTOFF = 0.6  # difflib's default: a ratio of at least 0.6


@functools.cache
def _known(allowed: frozenset[str]) -> tuple[dict[str, str], list[tuple[str, int, dict[int, None]]]]:
    """The lower-cased keys (to their spelling), each with its length and a table that
    deletes its characters (str.translate: what is left of a word is not in the key)."""
    lowered = {k.lower(): k for k in sorted(allowed)}
    return lowered, [(low, len(low), dict.fromkeys(map(ord, low))) for low in sorted(lowered)]


def suggest(key: str, allowed: set[str]) -> str:
    lowered, known = _known(frozenset(allowed))
    close = _closest(key.lower(), known)
    if close is not None:
        return f"did you mean {lowered[close]!r}?"
    return "known keys: " + ", ".join(sorted(allowed))


def _closest(word: str, known: list[tuple[str, int, dict[int, None]]]) -> str | None:
    """get_close_matches(word, known, n=1, cutoff=CUTOFF)[0], or None."""
    found: list[tuple[float, str]] = []
    matcher: SequenceMatcher[str] | None = None
    size = len(word)
    for candidate, length, deletes in known:
        total = size + length
        # Both bounds are at least difflib's quick_ratio (which is at least the ratio):
        # matches <= the shorter length, and <= the word's characters found in the key.
        if 2.0 * min(size, length) / total < CUTOFF or \
                2.0 * (size - len(word.translate(deletes))) / total < CUTOFF:
            continue
        if matcher is None:
            matcher = SequenceMatcher()
            matcher.set_seq2(word)
        matcher.set_seq1(candidate)
        if matcher.real_quick_ratio() >= CUTOFF and matcher.quick_ratio() >= CUTOFF \
                and matcher.ratio() >= CUTOFF:
            found.append((matcher.ratio(), candidate))
    best = heapq.nlargest(1, found)
    return best[0][1] if best else None
