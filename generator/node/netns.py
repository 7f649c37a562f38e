"""Entering a pod's network namespace from a thread (standard library only).

setns(2) moves only the calling thread, so a probe's sockets are made inside
the pod without a new process (`ip netns exec` costs a fork and an exec per
request). The names are those `ip netns` keeps under /run/netns. Each thread
records where it is, because a thread made by another starts in its maker's
namespace, not the process's.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_where = threading.local()
T = TypeVar("T")


def current() -> str | None:
    """The pod netns the calling thread entered, or None (the process's own)."""
    name: str | None = getattr(_where, "netns", None)
    return name


def inherit(name: str | None) -> None:
    """Record, in a new thread, the namespace its creator was in (where it starts)."""
    _where.netns = name


def enter(name: str | None) -> None:
    """Move the calling thread into pod netns `name` (None: back to the process's own)."""
    if current() == name:
        return
    if name and ("/" in name or name in (".", "..")):
        raise ValueError(f"bad netns name {name!r}")
    path = f"{NETNS_DIR}/{name}" if name else f"/proc/{os.getpid()}/ns/net"
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)
    _where.netns = name


def run_in(name: str | None, work: Callable[[], T]) -> T:
    """`work()` run in pod netns `name` by a thread of its own (the caller stays where it
    is); its exception, if any, is raised here."""
    if not name:
        return work()
    done: list[T] = []
    failed: list[BaseException] = []

    def enter_and_run() -> None:
        try:
            enter(name)
            done.append(work())
        except Exception as err:  # handed to the caller below
            failed.append(err)

    thread = threading.Thread(target=enter_and_run, daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return done[0]
