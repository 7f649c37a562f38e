"""The cluster DNS server: UDP and TCP on one address, answers from a zone file.

One thread, one selector. The zone file (a DnsZone document, JSON) is looked
at every quarter second and read again when its inode, mtime or size changed,
so records follow the lab well within the 2 s the contract allows; a file that
does not parse keeps the last good zone (and says so in the log). Work per
query is bounded: one datagram or one length-prefixed TCP message of at most
64 KiB, a parse that stops at the message's end, dictionary lookups; at most
MAX_TCP connections, each closed after TCP_IDLE seconds without a query.
Each query gets one log line in CoreDNS's log-plugin format.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from generator.node.dns.answer import Exchange, handle
from generator.node.dns.message import RCODE_NAMES, type_name
from generator.node.dns.records import ClusterZone
from generator.node.documents import DnsZone

RELOAD_EVERY = 0.25
RACY = 2.0  # seconds during which a file's mtime may not yet tell a rewrite apart
TCP_IDLE = 10.0
MAX_TCP = 64
UDP_BATCH = 64  # datagrams read per wake-up before the selector is asked again


class ZoneFile:
    """The zone as last read from its file."""

    def __init__(self, path: Path, log: IO[str]) -> None:
        self.path, self.log = path, log
        self.zone: ClusterZone | None = None
        self._seen: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._last_note = ""
        self._text: str | None = None

    def refresh(self, now: float) -> None:
        if now - self._checked < RELOAD_EVERY:
            return
        self._checked = now
        try:
            st = self.path.stat()
        except OSError as err:
            self._seen = None
            self._note(f"zone file unreadable: {err}")
            return
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        # A file rewritten within the clock's granularity can keep inode, mtime and
        # size (the "racy" case git knows): while its mtime is that recent, compare text.
        if key == self._seen and time.time() - st.st_mtime > RACY:
            return
        self._seen = key  # a bad file is read once, not every quarter second
        try:
            text = self.path.read_text()
            if text == self._text:
                return
            self._text = text
            self.zone = ClusterZone(cast(DnsZone, json.loads(text)), serial=int(st.st_mtime))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            self._note(f"zone file {self.path} not loaded, keeping the last good zone: {err!r}")
            return
        self._note(f"zone {self.zone.domain} loaded: {len(self.zone.names)} names")

    def _note(self, line: str) -> None:
        if line != self._last_note:
            self.log.write(f"{stamp()} [INFO] {line}\n")
            self._last_note = line


@dataclass
class TcpClient:
    sock: socket.socket
    peer: tuple[str, int]
    buffer: bytearray = field(default_factory=bytearray)
    last: float = field(default_factory=time.monotonic)


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def log_line(peer: tuple[str, int], proto: str, size: int, ex: Exchange, seconds: float) -> str:
    """`[INFO] ip:port - id "TYPE CLASS name. proto size do bufsize" RCODE flags rsize duration`."""
    if ex.query is None or not ex.query.questions:
        what = '"- - - ' + f'{proto} {size} false 512"'
        ident = ex.reply.id if ex.reply else 0
    else:
        q, edns = ex.query.questions[0], ex.query.edns
        do, bufsize = (edns.dnssec_ok, edns.payload) if edns else (False, 512)
        klass = "IN" if q.qclass == 1 else f"CLASS{q.qclass}"
        what = f'"{type_name(q.qtype)} {klass} {q.name}. {proto} {size} {str(do).lower()} {bufsize}"'
        ident = ex.query.id
    if ex.reply is None:
        outcome = "- - 0"
    else:
        r = ex.reply
        flags = ",".join(n for n, on in (("qr", r.qr), ("aa", r.aa), ("tc", r.tc), ("rd", r.rd),
                                          ("ra", r.ra)) if on)
        outcome = f"{RCODE_NAMES.get(r.rcode, str(r.rcode))} {flags} {len(ex.wire or b'')}"
    return f"{stamp()} [INFO] {peer[0]}:{peer[1]} - {ident} {what} {outcome} {seconds:.6f}s\n"


class DnsServer:
    def __init__(self, zone_file: Path, address: str, port: int, log: IO[str]) -> None:
        self.zones = ZoneFile(zone_file, log)
        self.log = log
        self.selector = selectors.DefaultSelector()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        self.tcp = socket.socket(family, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((address, port))
        self.tcp.bind((address, self.udp.getsockname()[1]))  # port 0: TCP on the port UDP got
        for sock in (self.udp, self.tcp):
            sock.setblocking(False)
        self.tcp.listen(128)
        self.address = self.udp.getsockname()[:2]
        self.selector.register(self.udp, selectors.EVENT_READ, "udp")
        self.selector.register(self.tcp, selectors.EVENT_READ, "accept")
        self.clients: dict[socket.socket, TcpClient] = {}

    def serve_forever(self, stop: Callable[[], bool] | None = None) -> None:
        """Serve until `stop()` answers true (checked at least every RELOAD_EVERY seconds)."""
        while stop is None or not stop():
            self.zones.refresh(time.monotonic())
            for key, _ in self.selector.select(RELOAD_EVERY):
                if key.data == "udp":
                    self._udp()
                elif key.data == "accept":
                    self._accept()
                else:
                    self._tcp(self.clients[cast(socket.socket, key.fileobj)])
            self._close_idle(time.monotonic())
            self.log.flush()

    def close(self) -> None:
        for sock in [*self.clients, self.udp, self.tcp]:
            sock.close()
        self.selector.close()

    def _exchange(self, data: bytes, peer: tuple[str, int], proto: str) -> bytes | None:
        started = time.perf_counter()
        ex = handle(data, self.zones.zone, udp=proto == "udp")
        self.log.write(log_line(peer, proto, len(data), ex, time.perf_counter() - started))
        return ex.wire

    def _udp(self) -> None:
        for _ in range(UDP_BATCH):
            try:
                data, peer = self.udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. an ICMP error reported on this socket: nothing to answer
            wire = self._exchange(data, peer, "udp")
            if wire is not None:
                with contextlib.suppress(OSError):  # the client went away; UDP owes it nothing
                    self.udp.sendto(wire, peer)

    def _accept(self) -> None:
        try:
            sock, peer = self.tcp.accept()
        except OSError:
            return
        if len(self.clients) >= MAX_TCP:
            sock.close()
            return
        sock.settimeout(1.0)  # bounds a send to a client that stopped reading
        self.clients[sock] = TcpClient(sock, peer)
        self.selector.register(sock, selectors.EVENT_READ, "tcp")

    def _tcp(self, client: TcpClient) -> None:
        try:
            chunk = client.sock.recv(65537)
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(client)
            return
        client.buffer += chunk
        client.last = time.monotonic()
        while len(client.buffer) >= 2:
            length = int.from_bytes(client.buffer[:2], "big")
            if len(client.buffer) < 2 + length:
                return
            data = bytes(client.buffer[2:2 + length])
            del client.buffer[:2 + length]
            wire = self._exchange(data, client.peer, "tcp")
            try:
                if wire is not None:
                    client.sock.sendall(len(wire).to_bytes(2, "big") + wire)
            except OSError:
                self._drop(client)
                return

    def _close_idle(self, now: float) -> None:
        for client in [c for c in self.clients.values() if now - c.last > TCP_IDLE]:
            self._drop(client)

    def _drop(self, client: TcpClient) -> None:
        self.clients.pop(client.sock, None)
        self.selector.unregister(client.sock)
        client.sock.close()


def open_log(path: str) -> IO[str]:
    if path == "-":
        return os.fdopen(os.dup(1), "w")
    return open(path, "a", encoding="utf-8")  # noqa: SIM115 - the server's lifetime
