"""kubelet's container restart back-off (kuberuntime_manager.go doBackOff over
client-go's flowcontrol.Backoff, without its jitter, which kubelet leaves at 0)."""

from __future__ import annotations

# kubelet's backOffPeriod and MaxContainerBackOff.
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 2 * BACKOFF_MAX  # flowcontrol's hasExpired: an entry older than this is gone


def restart_delay(backoff: float, updated: float, finished: float) -> float:
    """How long after an exit at `finished` the restart waits: doBackOff's
    IsInBackOffSince. No entry, or one not moved on for BACKOFF_RESET (the container
    ran that long): at once; else the entry's window, counted from the exit."""
    if backoff <= 0 or finished - updated > BACKOFF_RESET:
        return 0.0
    return backoff


def next_backoff(backoff: float, updated: float, finished: float) -> float:
    """The entry's window after a restart: flowcontrol.Backoff.Next (without its
    jitter, which kubelet leaves at 0): 10 s for a new or expired entry, else doubled,
    at most 300 s."""
    if backoff <= 0 or finished - updated > BACKOFF_RESET:
        return BACKOFF_INITIAL
    return min(backoff * 2, BACKOFF_MAX)
