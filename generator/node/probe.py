"""A probe client for checks run inside pods and clients.

`python3 -m generator.node.probe {http,udp,tcp,icmp} HOST PORT [PATH_OR_MESSAGE]
[--count N] [--timeout S] [--source-port P] [--fail-fast] [--json]`: every
attempt opens a new connection (a service re-draws its backend each time);
exit status 0 when all succeed, 1 otherwise, 2 for usage errors.
`--source-port` sends from that port (for icmp: the echo identifier), so that
`kgen trace` knows the flow exactly; icmp ignores PORT.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import struct
import sys
import time
from typing import Any

MAX_COUNT = 1000
MAX_TIMEOUT = 30.0


def _error(err: BaseException) -> str:
    if isinstance(err, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return f"{type(err).__name__}: {err}"


def _bound(sport: int | None) -> tuple[str, int] | None:
    return ("", sport) if sport else None


def http_get(host: str, port: int, path: str, timeout: float, sport: int | None = None) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=_bound(sport))
    try:
        conn.request("GET", path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        if response.status != 200:
            raise OSError(0, f"http {response.status}")
        return body
    finally:
        conn.close()


def udp_ask(host: str, port: int, message: str, timeout: float, sport: int | None = None) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        if sport:
            sock.bind(("", sport))
        sock.connect((host, port))  # connected: an ICMP error shows as ECONNREFUSED
        sock.send((message or "hostname").encode())
        return sock.recv(65535).decode(errors="replace")


def tcp_connect(host: str, port: int, _arg: str, timeout: float, sport: int | None = None) -> str:
    with socket.create_connection((host, port), timeout=timeout, source_address=_bound(sport)):
        return "connected"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_echo(host: str, _port: int, _arg: str, timeout: float, sport: int | None = None) -> str:
    """One echo request with identifier `sport` (raw socket: needs CAP_NET_RAW); the
    answer is the address that replied."""
    ident = sport or (os.getpid() & 0xFFFF)
    payload = b"kgen-probe"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(packet, (host, 0))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            data, (peer, _) = sock.recvfrom(65535)
            ihl = (data[0] & 0x0F) * 4
            kind, code, _, got_id, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and got_id == ident:
                return str(peer)
            if kind == 3 and len(data) >= ihl + 8 + 28:  # unreachable, about our echo?
                inner = data[ihl + 8:]
                inner_ihl = (inner[0] & 0x0F) * 4
                if struct.unpack("!H", inner[inner_ihl + 4:inner_ihl + 6])[0] == ident:
                    raise OSError(0, {0: "network unreachable", 1: "no route to host",
                                      3: "connection refused"}.get(code, f"unreachable {code}"))


MODES = {"http": http_get, "udp": udp_ask, "tcp": tcp_connect, "icmp": icmp_echo}


def attempt(mode: str, host: str, port: int, arg: str, timeout: float,
            sport: int | None = None) -> dict[str, Any]:
    started = time.monotonic()
    try:
        answer = MODES[mode](host, port, arg, timeout, sport)
        result: dict[str, Any] = {"ok": True, "answer": answer, "error": None}
    except (OSError, http.client.HTTPException) as err:
        result = {"ok": False, "answer": None, "error": _error(err)}
    result["ms"] = round((time.monotonic() - started) * 1000, 2)
    return result


def run(mode: str, host: str, port: int, arg: str, count: int, timeout: float,
        fail_fast: bool, sport: int | None = None) -> list[dict[str, Any]]:
    results = []
    for _ in range(count):
        results.append(attempt(mode, host, port, arg, timeout, sport))
        if fail_fast and not results[-1]["ok"]:
            break
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("arg", nargs="?", default="")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--source-port", type=int, default=0,
                        help="send from this port (icmp: the echo identifier)")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT or not 0 < args.timeout <= MAX_TIMEOUT:
        parser.error(f"--count must be 1-{MAX_COUNT} and --timeout 0-{MAX_TIMEOUT}")
    if not 0 <= args.source_port <= 65535:
        parser.error("--source-port must be 0-65535")
    results = run(args.mode, args.host, args.port, args.arg, args.count, args.timeout,
                  args.fail_fast, args.source_port or None)
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(r["answer"] if r["ok"] else f"error: {r['error']}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
