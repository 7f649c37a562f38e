"""The DNS server's sockets on loopback: UDP and TCP framing, pipelined and
split TCP messages, the bounds on connections, one log line per query."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.node.dns import server as dns_server
from generator.node.dns.message import FORMERR, NOERROR, NXDOMAIN, A, Message, Question, decode, encode
from generator.node.dns.server import MAX_TCP, DnsServer

SVC = "default.svc.cluster.local"


class Running:
    def __init__(self, server: DnsServer, log: io.StringIO) -> None:
        self.server, self.log = server, log
        self.address = server.address

    def tcp(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    zone = tmp_path / "zone.json"
    web = {"name": "web", "namespace": "default", "clusterIP": "10.96.0.20", "ports": [], "endpoints": []}
    zone.write_text(json.dumps({"domain": "cluster.local", "namespaces": ["default"], "pods": [],
                                "reverseCIDRs": [], "nameserver": None, "services": [web]}))
    log = io.StringIO()
    server = DnsServer(zone, "127.0.0.1", 0, log)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"stop": stop.is_set}, daemon=True)
    thread.start()
    try:
        yield Running(server, log)
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def query(name: str, ident: int) -> bytes:
    return encode(Message(id=ident, rd=True, questions=[Question(name, A)]))


def read_tcp(sock: socket.socket) -> Message:
    length = int.from_bytes(recv_exactly(sock, 2), "big")
    return decode(recv_exactly(sock, length))


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def test_udp_answers_and_formerr(running: Running) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query(f"web.{SVC}", 1), running.address)
        reply = decode(sock.recv(4096))
        assert (reply.id, reply.rcode, [r.data for r in reply.answers]) == (1, NOERROR, ["10.96.0.20"])
        sock.sendto(b"\x00\x02\x01\x00\x00\x01garbage", running.address)
        assert decode(sock.recv(4096)).rcode == FORMERR


def test_tcp_pipelined_and_split_messages(running: Running) -> None:
    with running.tcp() as sock:
        names = [f"web.{SVC}", f"no.{SVC}", f"web.{SVC}"]
        sock.sendall(b"".join(framed(query(name, i)) for i, name in enumerate(names)))
        replies = [read_tcp(sock) for _ in range(3)]
        assert [(r.id, r.rcode) for r in replies] == [(0, NOERROR), (1, NXDOMAIN), (2, NOERROR)]
        whole = framed(query(f"web.{SVC}", 7))
        sock.sendall(whole[:1])  # even the length prefix may arrive in pieces
        sock.sendall(whole[1:9])
        sock.sendall(whole[9:])
        assert read_tcp(sock).id == 7


def test_tcp_connections_are_bounded(running: Running) -> None:
    held = [running.tcp() for _ in range(MAX_TCP)]
    try:
        for sock in held:  # each one served, so the server has accepted it
            sock.sendall(framed(query(f"web.{SVC}", 3)))
            assert read_tcp(sock).id == 3
        with running.tcp() as extra:
            assert extra.recv(1) == b""  # one too many: closed at once
    finally:
        for sock in held:
            sock.close()


def test_idle_tcp_connections_are_closed(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dns_server, "TCP_IDLE", 0.5)
    with running.tcp() as sock:
        sock.sendall(framed(query(f"web.{SVC}", 4)))
        assert read_tcp(sock).id == 4
        assert sock.recv(1) == b""  # nothing asked for TCP_IDLE seconds: the server hangs up


def test_one_log_line_per_query(running: Running) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for i in range(5):
            sock.sendto(query(f"web.{SVC}", i), running.address)
            sock.recv(4096)
    lines = [line for line in running.log.getvalue().splitlines() if f'"A IN web.{SVC}. udp' in line]
    assert len(lines) == 5 and all(" NOERROR qr,aa,rd " in line for line in lines)
