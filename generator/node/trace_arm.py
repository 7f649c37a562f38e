"""Arming and disarming the kernel's trace for one flow on a node (`kgen trace`).

- iptables: `-j TRACE` rules in the raw table's PREROUTING and OUTPUT, each
  carrying the comment `kgen-trace:<id>:<deadline>`, added in one
  iptables-restore.
- nftables: a table `ip kgen_trace_<id>_<deadline>` whose chains (hooks
  prerouting and output, priority -350, before conntrack and every other
  table) set `meta nftrace 1`.

Every arming first removes the leftovers of traces whose deadline has passed
(a helper killed with SIGKILL cannot clean up after itself), under a lock
shared by the traces on the node. The raw table is created by the first
trace and removed by the last one out.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import socket
import struct
import time
from collections.abc import Iterator

from generator.node import proc
from generator.node.documents import TraceMatch, TracePlan

COMMENT = "kgen-trace"
NFT_PREFIX = "kgen_trace_"
NETLINK_NETFILTER = 12
ICMP_TYPES = {"echo-request": 8, "echo-reply": 0}


def run(*argv: str, stdin: str | None = None, timeout: float = 10.0) -> proc.Completed:
    return proc.run(argv, input=stdin, timeout=timeout)


def iptables_match(m: TraceMatch) -> str:
    """One flow match as iptables arguments (raw table)."""
    proto = m["proto"]
    parts = [f"-p {proto}"]
    if m.get("src"):
        parts.append(f"-s {m['src']}/32")
    if m.get("dst"):
        parts.append(f"-d {m['dst']}/32")
    if proto in ("tcp", "udp") and (m.get("sport") or m.get("dport")):
        parts.append(f"-m {proto}")
        if m.get("sport"):
            parts.append(f"--sport {int(m['sport'])}")
        if m.get("dport"):
            parts.append(f"--dport {int(m['dport'])}")
    if proto == "icmp":
        if m.get("icmp_type"):
            parts.append(f"-m icmp --icmp-type {ICMP_TYPES[m['icmp_type']]}")
        if m.get("icmp_id") is not None:
            # The echo identifier: 16 bits at offset 4 of the ICMP header.
            parts.append(f'-m u32 --u32 "0>>22&0x3C@4>>16=0x{int(m["icmp_id"]):x}"')
    return " ".join(parts)


def nft_match(m: TraceMatch) -> str:
    proto = m["proto"]
    parts = [f"meta l4proto {proto}"]
    if m.get("src"):
        parts.append(f"ip saddr {m['src']}")
    if m.get("dst"):
        parts.append(f"ip daddr {m['dst']}")
    if proto in ("tcp", "udp"):
        if m.get("sport"):
            parts.append(f"{proto} sport {int(m['sport'])}")
        if m.get("dport"):
            parts.append(f"{proto} dport {int(m['dport'])}")
    if proto == "icmp":
        if m.get("icmp_type"):
            parts.append(f"icmp type {m['icmp_type']}")
        if m.get("icmp_id") is not None:
            parts.append(f"icmp id {int(m['icmp_id'])}")
    return " ".join(parts)


def comment_of(trace_id: str, deadline: int) -> str:
    return f"{COMMENT}:{trace_id}:{deadline}"


def iptables_arm_payload(trace_id: str, deadline: int, matches: list[TraceMatch]) -> str:
    tag = comment_of(trace_id, deadline)
    lines = ["*raw"]
    for chain in ("PREROUTING", "OUTPUT"):
        for m in matches:
            lines.append(f"-A {chain} {iptables_match(m)} -m comment --comment {tag} -j TRACE")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def nft_table(trace_id: str, deadline: int) -> str:
    return f"{NFT_PREFIX}{trace_id}_{deadline}"


def nft_arm_payload(trace_id: str, deadline: int, matches: list[TraceMatch]) -> str:
    table = nft_table(trace_id, deadline)
    body = []
    for chain, hook in (("pre", "prerouting"), ("out", "output")):
        rules = "".join(f"    {nft_match(m)} meta nftrace set 1\n" for m in matches)
        body.append(f"  chain {chain} {{\n    type filter hook {hook} priority -350; policy accept;\n"
                    f"{rules}  }}\n")
    return f"table ip {table} {{\n{''.join(body)}}}\n"


_TAG = re.compile(rf"{COMMENT}:([0-9a-f]+):(\d+)")


def stale_or_ours(line: str, trace_id: str | None, now: float) -> bool:
    """An iptables-save line of a trace rule to remove: ours, or past its deadline."""
    found = _TAG.search(line)
    if not found or not line.startswith("-A "):
        return False
    return found.group(1) == trace_id or int(found.group(2)) < now


@contextlib.contextmanager
def node_lock() -> Iterator[None]:
    """Serialises arming and disarming between traces on one node (a lock on this very
    file: nothing new is created on the node)."""
    with open(__file__, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _nlmsg(mtype: int, flags: int, seq: int, family: int, res_id: int, payload: bytes = b"") -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + payload
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body


def delete_nft_table(name: str, family: int = socket.AF_INET) -> int:
    """NFT_MSG_DELTABLE in one nfnetlink batch (no nft binary needed); 0 or -errno."""
    request, ack = 1, 4  # NLM_F_REQUEST, NLM_F_ACK
    subsys = 10  # NFNL_SUBSYS_NFTABLES
    attr = struct.pack("=HH", 4 + len(name) + 1, 1) + name.encode() + b"\0"  # NFTA_TABLE_NAME
    attr += b"\0" * ((4 - len(attr) % 4) % 4)
    batch = (_nlmsg(0x10, request, 1, 0, subsys)  # NFNL_MSG_BATCH_BEGIN
             + _nlmsg((subsys << 8) | 2, request | ack, 2, family, 0, attr)  # NFT_MSG_DELTABLE
             + _nlmsg(0x11, request, 3, 0, subsys))  # NFNL_MSG_BATCH_END
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        sock.settimeout(2)
        sock.sendto(batch, (0, 0))
        data = sock.recv(65536)
    mtype = struct.unpack("=H", data[4:6])[0]
    return int(struct.unpack("=i", data[16:20])[0]) if mtype == 2 else 0  # NLMSG_ERROR


def raw_section(saved: str) -> list[str] | None:
    """The raw table's lines in a whole `iptables-save` (None: no raw table). Only the
    whole save tells: `iptables-save -t raw` prints an empty table that does not exist."""
    lines = saved.splitlines()
    if "*raw" not in lines:
        return None
    start = lines.index("*raw")
    end = lines.index("COMMIT", start) if "COMMIT" in lines[start:] else len(lines)
    return lines[start + 1:end]


def raw_table_unused(section: list[str] | None) -> bool:
    """A raw table that holds no rule and accepts everything: as if it did not exist."""
    if section is None:
        return False
    return all(line.startswith((":PREROUTING ACCEPT", ":OUTPUT ACCEPT")) for line in section
               if not line.startswith("#"))


def iptables_disarm(trace_id: str | None) -> int:
    """Remove our rules (and stale ones); then the raw table itself if nothing else uses
    it: the first trace on a node creates it, the last one out takes it away. (`-t raw`
    prints an empty table even where there is none: deleting that one is a no-op.)"""
    section = raw_section(run("iptables-save", "-t", "raw").stdout) or []
    doomed = [line for line in section if stale_or_ours(line, trace_id, time.time())]
    if doomed:
        payload = "*raw\n" + "".join(f"-D {line[3:]}\n" for line in doomed) + "COMMIT\n"
        result = run("iptables-restore", "-w", "--noflush", stdin=payload)
        if result.returncode != 0:  # one by one, so that one odd line cannot keep the others
            for line in doomed:
                run("sh", "-c", f"iptables -w -t raw -D {line[3:]}")
    if raw_table_unused([line for line in section if line not in doomed]):
        with contextlib.suppress(OSError):
            delete_nft_table("raw")
    return len(doomed)


def nft_disarm(trace_id: str | None) -> int:
    listed = run("nft", "list", "tables").stdout
    removed = 0
    for name in re.findall(rf"table ip ({NFT_PREFIX}([0-9a-f]+)_(\d+))", listed):
        table, owner, deadline = name
        if owner == trace_id or int(deadline) < time.time():
            run("nft", "delete", "table", "ip", table)
            removed += 1
    return removed


def arm(plan: TracePlan) -> None:
    """Sweep the leftovers of killed traces and add ours, under the node's lock; for
    iptables in one iptables-restore."""
    if not plan["matches"]:
        return
    with node_lock():
        if plan["mode"] == "nftables":
            nft_disarm(None)
            result = run("nft", "-f", "-", stdin=nft_arm_payload(plan["id"], plan["deadline"],
                                                                 plan["matches"]))
        else:
            section = raw_section(run("iptables-save", "-t", "raw").stdout) or []
            stale = [line for line in section if stale_or_ours(line, None, time.time())]
            ours = iptables_arm_payload(plan["id"], plan["deadline"], plan["matches"])
            payload = ours.replace("*raw\n", "*raw\n" + "".join(f"-D {line[3:]}\n"
                                                                 for line in stale), 1)
            result = run("iptables-restore", "-w", "--noflush", stdin=payload)
            if result.returncode != 0 and stale:
                iptables_disarm(None)
                result = run("iptables-restore", "-w", "--noflush", stdin=ours)
    if result.returncode != 0:
        raise RuntimeError(f"arming the trace failed: {result.stderr.strip()}")


def disarm(plan: TracePlan) -> None:
    with node_lock():
        if plan["mode"] == "nftables":
            nft_disarm(plan["id"])
        else:
            iptables_disarm(plan["id"])


def sweep(mode: str) -> None:
    """Remove what traces killed without a chance to clean up left behind."""
    with node_lock():
        if mode == "nftables":
            nft_disarm(None)
        else:
            iptables_disarm(None)
