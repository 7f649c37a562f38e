"""MetalLB's layer 2 speaker: this node answers ARP for the LoadBalancer IPs it owns.

Which node owns an IP is `lb_election.lb_announcers` (the same rule on every node and
on the host). The speaker holds an AF_PACKET socket on the node's underlay
interface: an ARP request for an owned IP gets a reply with the interface's MAC;
an IP newly owned is announced at once with a gratuitous ARP (a request and a
reply, both broadcast, as MetalLB sends them), so clients that cached the previous
owner's MAC move to this node without flushing anything. The kernel itself never
answers for these IPs: they are on no interface (kube-proxy's rules catch their
traffic in PREROUTING).
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import struct
import threading

log = logging.getLogger("kgen.speaker")

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
REQUEST, REPLY = 1, 2
ARP_FORMAT = "!HHBBH6s4s6s4s"  # htype ptype hlen plen oper sha spa tha tpa
ARP_LEN = struct.calcsize(ARP_FORMAT)


def arp_frame(op: int, src_mac: bytes, src_ip: bytes, dst_mac: bytes, target_mac: bytes,
              target_ip: bytes) -> bytes:
    """An Ethernet frame carrying one ARP packet (Ethernet, IPv4)."""
    header = dst_mac + src_mac + struct.pack("!H", ETH_P_ARP)
    return header + struct.pack(ARP_FORMAT, 1, ETH_P_IP, 6, 4, op, src_mac, src_ip,
                                target_mac, target_ip)


def gratuitous(mac: bytes, ip: str) -> list[bytes]:
    """MetalLB's gratuitous ARP: a request and a reply, sender and target the IP."""
    packed = ipaddress.IPv4Address(ip).packed
    return [arp_frame(op, mac, packed, BROADCAST, BROADCAST, packed) for op in (REQUEST, REPLY)]


def answer(frame: bytes, mac: bytes, owned: frozenset[bytes]) -> bytes | None:
    """The reply to an ARP request for an owned IP (packed), else None."""
    if len(frame) < 14 + ARP_LEN or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    htype, ptype, hlen, plen, op, sha, spa, _, tpa = struct.unpack(
        ARP_FORMAT, frame[14:14 + ARP_LEN])
    if (htype, ptype, hlen, plen, op) != (1, ETH_P_IP, 6, 4, REQUEST) or tpa not in owned:
        return None
    if sha == mac:
        return None  # our own gratuitous request
    return arp_frame(REPLY, mac, tpa, sha, sha, spa)


IDLE_WAKE = 60.0  # the longest sleep: it bounds only how late `stop` is seen


class Speaker:
    """Answers ARP on `ifname` for the IPs given to `announce`, in a thread of its own."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.sock.bind((ifname, ETH_P_ARP))
        self.mac: bytes = self.sock.getsockname()[4]
        self.lock = threading.Lock()
        self.owned: frozenset[bytes] = frozenset()
        self.ips: frozenset[str] = frozenset()
        self.owning = threading.Event()  # set while it owns any IP

    def announce(self, ips: set[str]) -> None:
        """Own exactly `ips` from now on; the ones newly owned get a gratuitous ARP."""
        new = frozenset(ips)
        with self.lock:
            gained, lost = new - self.ips, self.ips - new
            self.ips = new
            self.owned = frozenset(ipaddress.IPv4Address(ip).packed for ip in new)
            if new:
                self.owning.set()
            else:
                self.owning.clear()
        for ip in sorted(gained):
            log.info("announcing %s on %s (gratuitous ARP)", ip, self.ifname)
            for frame in gratuitous(self.mac, ip):
                self.sock.send(frame)
        for ip in sorted(lost):
            log.info("no longer announcing %s", ip)

    def forget(self) -> None:
        """Own nothing until the next `announce`, which then announces every IP anew (a
        node that was frozen cannot know whether another took its IPs meanwhile)."""
        with self.lock:
            self.ips, self.owned = frozenset(), frozenset()
            self.owning.clear()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            # Owning nothing, it has nothing to answer: it sleeps until `announce` gives
            # it an IP, not woken by every ARP frame of the node network (most nodes
            # never own one). Frames queued meanwhile are answered once it owns an IP.
            if not self.owning.wait(IDLE_WAKE):
                continue
            # A frame wakes it; the timeout only bounds how late `stop` is seen (the
            # agent's threads are daemons: at exit they end with it anyway).
            ready, _, _ = select.select([self.sock], [], [], IDLE_WAKE)
            if not ready:
                continue
            frame = self.sock.recv(2048)
            with self.lock:
                owned = self.owned
            reply = answer(frame, self.mac, owned) if owned else None
            if reply is not None:
                self.sock.send(reply)
