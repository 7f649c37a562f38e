"""What wakes an idle node agent: a file changed, a pod's process ended, or a thread asked.

At 100 nodes an agent that woke once a second to look for changes spent about 0.4 ms
of CPU on each look (a cold cache, a few dozen syscalls and the Python around them):
most of an idle node's CPU. So the main loop sleeps in one `select` on

- an inotify descriptor watching the directories whose files it reads: cluster.json's
  (the host replaces it) and the state directory (peers replace their documents there;
  their heartbeats live in a subdirectory, which is not watched, so renewals wake no one);
- a pidfd of each pod process it would otherwise poll (kubelet's PLEG relists once a
  second; a pidfd says at once that the process ended);
- a pipe other threads write to (`wake`: the heartbeat thread saw a peer come or go).

Where inotify or pidfds are missing (another kernel, a file system that sends no
events) the agent polls as before: `complete` says whether it may sleep long.
Standard library only: inotify through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("kgen.agent")

# <sys/inotify.h>: a file written, replaced (renamed in or out), created or deleted.
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO
              | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
READ_CHUNK = 65536


def open_inotify(dirs: Iterable[Path]) -> int | None:
    """An inotify descriptor watching `dirs`; None when the kernel or libc lacks it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError) as err:
        log.warning("no inotify (%s): the agent polls its files once a second", err)
        return None
    if fd < 0:
        log.warning("no inotify (%s): the agent polls its files once a second",
                    os.strerror(ctypes.get_errno()))
        return None
    for path in dirs:
        if libc.inotify_add_watch(fd, os.fsencode(path), WATCH_MASK) < 0:
            log.warning("cannot watch %s (%s): the agent polls its files once a second",
                        path, os.strerror(ctypes.get_errno()))
            os.close(fd)
            return None
    return fd


class Waker:
    def __init__(self, dirs: Iterable[Path]) -> None:
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.inotify = open_inotify(dirs)
        self.pidfds: dict[int, int] = {}  # pid: its pidfd
        self.unwatched = 0  # processes without a pidfd (they need polling)

    def wake(self) -> None:
        """Make the next (or current) `wait` return at once; safe from any thread and
        from a signal handler."""
        with contextlib.suppress(BlockingIOError):  # a full pipe: it is awake already
            os.write(self.pipe_w, b"\0")

    def watch_processes(self, pids: Iterable[int]) -> None:
        """Watch exactly these processes (the ones the agent would poll)."""
        wanted = set(pids)
        for pid in set(self.pidfds) - wanted:
            os.close(self.pidfds.pop(pid))
        self.unwatched = 0
        for pid in wanted - set(self.pidfds):
            try:
                self.pidfds[pid] = os.pidfd_open(pid)
            except (OSError, AttributeError):  # gone already (the next poll sees it), or no pidfd
                self.unwatched += 1

    @property
    def complete(self) -> bool:
        """Does every change the agent waits for wake it?"""
        return self.inotify is not None and self.unwatched == 0

    def wait(self, timeout: float | None) -> None:
        """Sleep until woken or `timeout` seconds passed; the events are used up."""
        fds = [self.pipe_r, *self.pidfds.values()]
        if self.inotify is not None:
            fds.append(self.inotify)
        ready, _, _ = select.select(fds, [], [], timeout)
        for fd in ready:
            if fd in (self.pipe_r, self.inotify):
                _drain(fd)
            # A pidfd stays readable once its process ended: the agent polls the process,
            # reaps it, and leaves it out of the next `watch_processes`.


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, READ_CHUNK):
            pass
