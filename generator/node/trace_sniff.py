"""The flow's frames on a node's underlay (`kgen trace`), read from an AF_PACKET socket:
the outer addresses, UDP port and VNI of VXLAN frames, and the inner packet's IP
id and ports; pod packets routed in the clear (host-gw) too.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import threading
import time

from generator.node.documents import Frame, FrameEncap

MAX_FRAMES = 200
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1}


def parse_frame(frame: bytes, vxlan_port: int, proto: int, outgoing: bool = False,
                seen: float = 0.0) -> Frame | None:
    """An underlay frame that carries an IPv4 packet of `proto`: VXLAN (outer header
    and VNI) or a pod packet routed in the clear (host-gw)."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    encap: FrameEncap | None = None
    inner_frame = frame
    if ip[9] == 17 and len(ip) >= ihl + 8:
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        if dport == vxlan_port and len(ip) >= ihl + 16 + 14 + 20:
            encap = {"src": socket.inet_ntoa(ip[12:16]), "dst": socket.inet_ntoa(ip[16:20]),
                     "sport": sport, "dport": dport,
                     "vni": int.from_bytes(ip[ihl + 12:ihl + 15], "big")}
            inner_frame = ip[ihl + 16:]
    return parse_inner(inner_frame, proto, encap, outgoing, seen)


def parse_inner(frame: bytes, proto: int, encap: FrameEncap | None = None,
                outgoing: bool = False, seen: float = 0.0) -> Frame | None:
    """The IPv4 packet of an Ethernet frame, when it is of `proto`."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != proto:
        return None
    out: Frame = {"src": socket.inet_ntoa(ip[12:16]), "dst": socket.inet_ntoa(ip[16:20]),
                  "id": struct.unpack("!H", ip[4:6])[0], "sport": None, "dport": None,
                  "encap": encap, "outgoing": outgoing, "t": seen}
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
        self.frames: list[Frame] = []
        self.vxlan_port, self.proto, self.ports = vxlan_port, proto, ports
        self.inside = [ipaddress.ip_network(n) for n in inside]
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind((iface, 0))
        self.sock.setblocking(False)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _wanted(self, rec: Frame) -> bool:
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
                rec = parse_frame(frame, self.vxlan_port, self.proto,
                                  addr[2] == socket.PACKET_OUTGOING, time.monotonic())
                if rec is not None and self._wanted(rec):
                    self.frames.append(rec)

    def stop(self) -> list[Frame]:
        time.sleep(0.02)
        self.done.set()
        self.thread.join(2)
        self.sock.close()
        return self.frames
