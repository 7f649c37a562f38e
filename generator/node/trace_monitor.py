"""Reading the kernel's trace on a node: `xtables-monitor --trace` (iptables) or
`nft monitor trace` (nftables), its lines collected by a thread.

Arming waits until the monitor's own netlink socket has joined the trace
group (read from /proc/net/netlink), so that no event of the flow is sent
before anyone listens, without a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

NFTRACE_GROUP_BIT = 1 << (9 - 1)  # NFNLGRP_NFTRACE
NETLINK_NETFILTER = 12
READY_TIMEOUT = 3.0
MAX_LINES = 20000


class Monitor:
    """`xtables-monitor --trace` or `nft monitor trace`, its lines collected by a thread."""

    def __init__(self, mode: str) -> None:
        argv = ["nft", "monitor", "trace"] if mode == "nftables" else ["xtables-monitor", "--trace"]
        # stderr too: a monitor that falls behind says it lost events (netlink ENOBUFS).
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if len(self.lines) < MAX_LINES:
                self.lines.append(line.rstrip("\n"))

    def socket_inodes(self) -> set[str]:
        inodes = set()
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        return inodes

    def ready(self) -> bool:
        """True once the monitor's own netlink socket has joined the trace group."""
        inodes = self.socket_inodes()
        with contextlib.suppress(OSError):
            for row in Path("/proc/net/netlink").read_text().splitlines()[1:]:
                f = row.split()
                if len(f) >= 10 and f[1] == str(NETLINK_NETFILTER) and f[9] in inodes \
                        and int(f[3], 16) & NFTRACE_GROUP_BIT:
                    return True
        return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError("the trace monitor exited at start")
            if time.monotonic() > deadline:
                raise RuntimeError("the trace monitor did not subscribe in time")
            time.sleep(0.005)

    def stop(self) -> list[str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)
        self.thread.join(2)
        return list(self.lines)
