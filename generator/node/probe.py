"""A probe client for checks run inside pods and clients.

`python3 -m generator.node.probe {http,udp,tcp} HOST PORT [PATH_OR_MESSAGE]
[--count N] [--timeout S] [--fail-fast] [--json]`: every attempt opens a new
connection (a service re-draws its backend each time); exit status 0 when all
succeed, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
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


def http_get(host: str, port: int, path: str, timeout: float) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        if response.status != 200:
            raise OSError(0, f"http {response.status}")
        return body
    finally:
        conn.close()


def udp_ask(host: str, port: int, message: str, timeout: float) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))  # connected: an ICMP error shows as ECONNREFUSED
        sock.send((message or "hostname").encode())
        return sock.recv(65535).decode(errors="replace")


def tcp_connect(host: str, port: int, _arg: str, timeout: float) -> str:
    with socket.create_connection((host, port), timeout=timeout):
        return "connected"


MODES = {"http": http_get, "udp": udp_ask, "tcp": tcp_connect}


def attempt(mode: str, host: str, port: int, arg: str, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    try:
        answer = MODES[mode](host, port, arg, timeout)
        result: dict[str, Any] = {"ok": True, "answer": answer, "error": None}
    except (OSError, http.client.HTTPException) as err:
        result = {"ok": False, "answer": None, "error": _error(err)}
    result["ms"] = round((time.monotonic() - started) * 1000, 2)
    return result


def run(mode: str, host: str, port: int, arg: str, count: int, timeout: float,
        fail_fast: bool) -> list[dict[str, Any]]:
    results = []
    for _ in range(count):
        results.append(attempt(mode, host, port, arg, timeout))
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
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT or not 0 < args.timeout <= MAX_TIMEOUT:
        parser.error(f"--count must be 1-{MAX_COUNT} and --timeout 0-{MAX_TIMEOUT}")
    results = run(args.mode, args.host, args.port, args.arg, args.count, args.timeout,
                  args.fail_fast)
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(r["answer"] if r["ok"] else f"error: {r['error']}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
