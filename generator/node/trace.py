"""The node side of `kgen trace`: arm the kernel's netfilter trace for one flow,
read it, disarm it, and report what the kernel said.

`python3 -m generator.node.trace` reads a plan (one JSON line) on stdin, then
commands, one per line: `go` runs the plan's probe (on the trace's source),
`stop` ends the trace. It answers with JSON lines on stdout: `{"event":
"armed"}`, `{"event": "probe", ...}`, then `{"event": "report", ...}`.

Arming (plan "mode"):
- iptables: `-j TRACE` rules in the raw table's PREROUTING and OUTPUT, each
  carrying the comment `kgen-trace:<id>:<deadline>`; the kernel's events are
  read with `xtables-monitor --trace` (rules printed as iptables-save does).
- nftables: a table `ip kgen_trace_<id>_<deadline>` whose chains (hooks
  prerouting and output, priority -350, before conntrack and every other
  table) set `meta nftrace 1`; read with `nft monitor trace`.

Whatever happens (stop, end of stdin because the host went away, a signal,
the plan's deadline, an error) the rules are removed before exit, and every
start also removes the leftovers of traces whose deadline has passed (a
helper killed with SIGKILL cannot clean up after itself).

While armed, an AF_PACKET socket on the underlay records the overlay frames
that carry the flow (outer addresses, UDP port and VNI, read from the wire).
After stopping, the report adds the routing decisions (`ip route get`) for
the addresses seen, the conntrack entries of the protocol, the bridge ports
of the node's pods and the nat chains that choose endpoints.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from generator.node import proc

COMMENT = "kgen-trace"
NFT_PREFIX = "kgen_trace_"
NFTRACE_GROUP_BIT = 1 << (9 - 1)  # NFNLGRP_NFTRACE
NETLINK_NETFILTER = 12
READY_TIMEOUT = 3.0
MAX_FRAMES = 200
MAX_LINES = 20000
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1}
ICMP_TYPES = {"echo-request": 8, "echo-reply": 0}


class Stop(Exception):
    """A signal asked the helper to end (the rules still come off)."""


def run(*argv: str, stdin: str | None = None, timeout: float = 10.0) -> proc.Completed:
    return proc.run(argv, input=stdin, timeout=timeout)


# ---------------------------------------------------------------- rules


def iptables_match(m: dict[str, Any]) -> str:
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


def nft_match(m: dict[str, Any]) -> str:
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


def iptables_arm_payload(trace_id: str, deadline: int, matches: list[dict[str, Any]]) -> str:
    tag = comment_of(trace_id, deadline)
    lines = ["*raw"]
    for chain in ("PREROUTING", "OUTPUT"):
        for m in matches:
            lines.append(f"-A {chain} {iptables_match(m)} -m comment --comment {tag} -j TRACE")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def nft_table(trace_id: str, deadline: int) -> str:
    return f"{NFT_PREFIX}{trace_id}_{deadline}"


def nft_arm_payload(trace_id: str, deadline: int, matches: list[dict[str, Any]]) -> str:
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
def node_lock() -> Any:
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


def arm(plan: dict[str, Any]) -> None:
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


def disarm(plan: dict[str, Any]) -> None:
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


# ---------------------------------------------------------------- monitor


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


# ---------------------------------------------------------------- wire


def parse_frame(frame: bytes, vxlan_port: int, proto: int) -> dict[str, Any] | None:
    """An underlay frame that carries an IPv4 packet of `proto`: VXLAN (outer header
    and VNI) or a pod packet routed in the clear (host-gw)."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    outer_proto = ip[9]
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    if outer_proto == 17 and len(ip) >= ihl + 8:
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        if dport == vxlan_port and len(ip) >= ihl + 16 + 14 + 20:
            vni = int.from_bytes(ip[ihl + 12:ihl + 15], "big")
            inner = parse_inner(ip[ihl + 16:], proto)
            if inner is None:
                return None
            return {"encap": {"src": src, "dst": dst, "sport": sport, "dport": dport, "vni": vni},
                    **inner}
    inner = parse_inner(frame, proto)
    if inner is None:
        return None
    return {"encap": None, **inner}


def parse_inner(frame: bytes, proto: int) -> dict[str, Any] | None:
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != proto:
        return None
    out: dict[str, Any] = {"src": socket.inet_ntoa(ip[12:16]), "dst": socket.inet_ntoa(ip[16:20]),
                           "id": struct.unpack("!H", ip[4:6])[0], "sport": None, "dport": None}
    if proto in (6, 17) and len(ip) >= ihl + 4:
        out["sport"], out["dport"] = struct.unpack("!HH", ip[ihl:ihl + 4])
    elif proto == 1 and len(ip) >= ihl + 8:
        out["icmp_type"] = ip[ihl]
        out["icmp_id"] = struct.unpack("!H", ip[ihl + 4:ihl + 6])[0]
    return out


class Sniffer:
    """Frames of the flow's protocol on the underlay, with their direction."""

    def __init__(self, iface: str, vxlan_port: int, proto: int, ports: set[int],
                 inside: list[str]) -> None:
        self.frames: list[dict[str, Any]] = []
        self.vxlan_port, self.proto, self.ports = vxlan_port, proto, ports
        self.inside = [ipaddress.ip_network(n) for n in inside]
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind((iface, 0))
        self.sock.setblocking(False)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _wanted(self, rec: dict[str, Any]) -> bool:
        if self.proto != 1 and not ({rec["sport"], rec["dport"]} & self.ports):
            return False
        if rec["encap"] is not None:
            return True
        return any(ipaddress.ip_address(a) in n for a in (rec["src"], rec["dst"]) for n in self.inside)

    def _loop(self) -> None:
        while not self.done.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            while len(self.frames) < MAX_FRAMES:
                try:
                    frame, addr = self.sock.recvfrom(65535)
                except BlockingIOError:
                    break
                rec = parse_frame(frame, self.vxlan_port, self.proto)
                if rec is not None and self._wanted(rec):
                    rec["outgoing"] = addr[2] == socket.PACKET_OUTGOING
                    rec["t"] = time.monotonic()
                    self.frames.append(rec)

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.02)
        self.done.set()
        self.thread.join(2)
        self.sock.close()
        return self.frames


# ---------------------------------------------------------------- what the node knows


def ip_json(*args: str, netns: str | None = None) -> Any:
    argv = ["ip", *(["-n", netns] if netns else []), "-j", *args]
    result = run(*argv)
    if result.returncode != 0:
        return {"error": result.stderr.strip()}
    try:
        return json.loads(result.stdout) if result.stdout.strip() else []
    except ValueError:
        return {"error": result.stdout.strip()}


_PACKET = re.compile(r"\b(IN|OUT|SRC|DST)=(\S+)")
_NFT_PACKET = [(re.compile(r'\biif "([^"]+)"'), "IN"), (re.compile(r'\boif "([^"]+)"'), "OUT"),
               (re.compile(r"\bip saddr (\S+)"), "SRC"), (re.compile(r"\bip daddr (\S+)"), "DST")]
_DNAT = re.compile(r"(?:--to-destination|dnat to) (\d+\.\d+\.\d+\.\d+)")


def packet_fields(line: str) -> dict[str, str] | None:
    """IN, OUT, SRC, DST of a monitor's packet line (xtables-monitor or nft monitor trace)."""
    if line.startswith("PACKET:"):
        return dict(_PACKET.findall(line))
    if line.startswith("trace id ") and " packet: " in line:
        out = {}
        for pattern, key in _NFT_PACKET:
            found = pattern.search(line)
            if found:
                out[key] = found.group(1)
        return out
    return None


def route_questions(lines: list[str]) -> list[tuple[str, str | None, str | None]]:
    """(dst, src, iif) of every packet the monitor showed, and of every DNAT target."""
    asked: list[tuple[str, str | None, str | None]] = []
    seen_src: list[tuple[str | None, str | None]] = []
    for line in lines:
        f = packet_fields(line)
        if f is not None:
            if "DST" not in f:
                continue
            iif = f.get("IN")
            q = (f["DST"], f.get("SRC") if iif else None, iif)
            if q not in asked:
                asked.append(q)
            if (q[1], iif) not in seen_src:
                seen_src.append((q[1], iif))
        for target in _DNAT.findall(line) if f is None else []:
            for src, iif in seen_src:
                q = (target, src, iif)
                if q not in asked:
                    asked.append(q)
    return asked[:16]


def routes(lines: list[str]) -> list[dict[str, Any]]:
    def ask(q: tuple[str, str | None, str | None]) -> dict[str, Any]:
        dst, src, iif = q
        args = ["route", "get", dst, *(["from", src, "iif", iif] if iif and src else [])]
        return {"dst": dst, "src": src, "iif": iif, "result": ip_json(*args)}

    questions = route_questions(lines)
    if not questions:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(questions)) as pool:
        return list(pool.map(ask, questions))


def bridge_ports() -> dict[str, Any]:
    """Which veth on cbr0 leads to which pod namespace."""
    netns = run("ip", "netns", "list").stdout
    by_id = {m.group(2): m.group(1) for m in re.finditer(r"^(\S+) \(id: (\d+)\)", netns, re.M)}
    ports = {}
    links = ip_json("link", "show", "master", "cbr0")
    for link in links if isinstance(links, list) else []:
        pod = by_id.get(str(link.get("link_netnsid")))
        if pod:
            ports[pod] = {"veth": link.get("ifname"), "state": link.get("operstate")}
    bridge = ip_json("link", "show", "cbr0")
    state = bridge[0].get("operstate") if isinstance(bridge, list) and bridge else "absent"
    return {"cbr0": state, "pods": ports}


def conntrack(proto: str) -> list[str]:
    return run("conntrack", "-L", "-p", proto).stdout.splitlines()[:500]


def nat_chains() -> list[str]:
    """The endpoint-choosing chains (kube-proxy's iptables or nftables layout)."""
    saved = run("iptables-save", "-t", "nat").stdout.splitlines()
    return [line for line in saved if line.startswith(("-A KUBE-SVC-", "-A KUBE-SVL-"))]


def source_route(probe: dict[str, Any] | None) -> dict[str, Any] | None:
    if not probe:
        return None
    netns = probe.get("netns")
    out: dict[str, Any] = {"route": ip_json("route", "get", probe["host"], netns=netns)}
    if netns:
        out["eth0"] = ip_json("link", "show", "eth0", netns=netns)
    return out


# ---------------------------------------------------------------- probe


def backlog_drops() -> int:
    """Packets the kernel dropped from its per-CPU input backlogs so far (all namespaces):
    a packet that vanishes between two places with no rule to blame may be one of them."""
    try:
        rows = Path("/proc/net/softnet_stat").read_text().split("\n")
        return sum(int(r.split()[1], 16) for r in rows if r.strip())
    except (OSError, ValueError, IndexError):
        return 0


CLONE_NEWNET = 0x40000000


def _in_netns(netns: str | None, work: Any) -> Any:
    """Run `work()` in a thread that has entered the pod's network namespace (setns acts
    on the calling thread only): the probe's sockets are made there, with no new process."""
    if not netns:
        return work()
    import ctypes

    box: dict[str, Any] = {}

    def enter_and_run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}", "rb") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns}")
            box["result"] = work()
        except Exception as err:  # reported as the probe's error
            box["error"] = err

    thread = threading.Thread(target=enter_and_run, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def run_probe(probe: dict[str, Any]) -> dict[str, Any]:
    """The existing probe (generator.node.probe), run in this process from the source's
    network namespace."""
    from generator.node import probe as prober

    mode = {"http": "http", "udp": "udp", "icmp": "icmp", "tcp": "tcp"}[probe["mode"]]
    before = backlog_drops()
    try:
        out = dict(_in_netns(probe.get("netns"), lambda: prober.attempt(
            mode, probe["host"], int(probe["port"]), probe.get("arg", ""),
            float(probe["timeout"]), int(probe["sport"]))))
    except Exception as err:
        out = {"ok": False, "answer": None, "error": f"{type(err).__name__}: {err}"[:300], "ms": 0}
    out["backlogDrops"] = backlog_drops() - before
    return out


# ---------------------------------------------------------------- main


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def _raise_stop(*_: Any) -> None:
    raise Stop


_pending = bytearray()


def wait_command(deadline: float) -> str:
    """The next command on stdin (read unbuffered, so that select never sleeps on a line
    already read); "stop" at end of input or past the deadline."""
    while b"\n" not in _pending:
        left = deadline - time.time()
        if left <= 0:
            return "stop"
        ready, _, _ = select.select([0], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(0, 4096)
            if not chunk:
                return "stop"
            _pending.extend(chunk)
    line, _, rest = bytes(_pending).partition(b"\n")
    _pending[:] = rest
    return line.decode(errors="replace").strip() or "stop"


def trace(plan: dict[str, Any]) -> dict[str, Any]:
    mode = plan["mode"]
    monitor = Monitor(mode) if plan["matches"] else None
    sniffer = None
    report: dict[str, Any] = {"event": "report", "member": plan["member"], "error": None}
    armed = False
    lines: list[str] = []
    frames: list[dict[str, Any]] = []
    try:
        cap = plan.get("capture")
        if cap:
            sniffer = Sniffer(cap["iface"], cap["vxlan_port"], PROTO_NUMBERS[plan["proto"]],
                              set(cap["ports"]), cap["inside"])
        if monitor:
            monitor.wait_ready()
        armed = True
        arm(plan)
        emit({"event": "armed"})
        while True:
            command = wait_command(plan["deadline"])
            if command == "go" and plan.get("probe"):
                emit({"event": "probe", "result": run_probe(plan["probe"])})
            elif command == "stop":
                break
        time.sleep(plan.get("linger", 0.05))  # the last events of a reply still in flight
    except Stop:
        report["error"] = "interrupted"
    except Exception as err:
        report["error"] = f"{type(err).__name__}: {err}"
    finally:
        # Nothing may interrupt the clean-up: a second Ctrl-C or TERM waits until it is done.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if armed:
            disarm(plan)
        lines = monitor.stop() if monitor else []
        frames = sniffer.stop() if sniffer else []
    node = bool(plan.get("node"))
    asks: dict[str, Any] = {
        "routes": lambda: routes(lines),
        "conntrack": lambda: conntrack(plan["proto"]) if plan["matches"] else [],
        "bridge": lambda: bridge_ports() if node else None,
        "natChains": lambda: nat_chains() if node and mode == "iptables" else [],
        "source": lambda: source_route(plan.get("probe")),
    }
    # Each is a few short commands: all at once, so that a busy machine costs one wait.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(asks)) as pool:
        futures = {key: pool.submit(ask) for key, ask in asks.items()}
        report.update({"lines": lines, "frames": frames,
                       **{key: f.result() for key, f in futures.items()}})
    return report


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    line = wait_command(time.time() + 30)
    try:
        plan = json.loads(line)
    except ValueError:
        emit({"event": "report", "error": "no plan on stdin"})
        return 2
    try:
        report = trace(plan)
    except Stop:
        with contextlib.suppress(Exception):
            disarm(plan)
        return 1
    emit(report)
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
