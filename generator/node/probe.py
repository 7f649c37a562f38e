"""A probe client for checks run inside pods and clients.

`python3 -m generator.node.probe {http,udp,tcp,icmp} HOST PORT [PATH_OR_MESSAGE]
[--count N] [--timeout S] [--source-port P] [--fail-fast] [--json]`: every
attempt opens a new connection (a service re-draws its backend each time);
exit status 0 when all succeed, 1 otherwise, 2 for usage errors.
`--source-port` sends from that port (for icmp: the echo identifier), so that
`kgen trace` knows the flow exactly; icmp ignores PORT.

`python3 -m generator.node.probe batch JOBS [--deadline S] [--workers W]` runs
many probes in one process (one `docker exec` for all the checks a node or
client sends): JOBS is base64 of zlib-compressed JSON, a list of jobs
`{"netns", "mode", "host", "port", "arg", "count", "timeout", "until",
"fail_fast", "streams"}`. A job with a `netns` runs inside that network namespace
(`/run/netns/NAME`, entered by its worker thread with setns(2)); it sends up
to `count` requests (over up to `streams` connections at once) and stops
early at the first failure (`fail_fast`) or once every answer in `until` has
been seen. It prints one JSON list, one
summary per job in order: `{"sent", "ok", "answers": {answer: n}, "errors":
{error: n}, "ms_max"}`. Probes go only to private or loopback addresses.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ipaddress
import json
import os
import socket
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generator.node import netns

MAX_COUNT = 50000
MAX_TIMEOUT = 30.0
MAX_DEADLINE = 600.0
MAX_WORKERS = 64
MAX_STREAMS = 8
# Where lab traffic may go: RFC 1918, shared address space (100.64.0.0/10), loopback.
ALLOWED = [ipaddress.ip_network(n) for n in
           ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8")]


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


def allowed(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in ALLOWED)


# One namespace helper on the node (generator.node.netns), shared with the trace helper.
current_netns = netns.current
enter_netns = netns.enter


class _Job:
    """The shared state of one job's requests, sent by up to `streams` threads."""

    def __init__(self, job: dict[str, Any], deadline: float) -> None:
        self.job = job
        self.deadline = deadline
        self.count = max(1, min(int(job.get("count", 1)), MAX_COUNT))
        self.timeout = max(0.01, min(float(job.get("timeout", 2.0)), MAX_TIMEOUT))
        self.until = set(job["until"]) if job.get("until") else None
        self.fail_fast = bool(job.get("fail_fast", True))
        self.lock = threading.Lock()
        self.issued = 0
        self.stop = False
        self.summary: dict[str, Any] = {"sent": 0, "ok": 0, "answers": {}, "errors": {},
                                        "ms_max": 0.0}

    def error(self, error: str) -> None:
        errors = self.summary["errors"]
        errors[error] = errors.get(error, 0) + 1

    def ticket(self) -> float | None:
        """Leave to send one more request: its timeout, or None when the job is done."""
        with self.lock:
            left = self.deadline - time.monotonic()
            if self.stop or self.issued >= self.count:
                return None
            if left <= 0:
                self.stop = True
                self.error("deadline reached")
                return None
            self.issued += 1
            return min(self.timeout, left)

    def record(self, r: dict[str, Any]) -> None:
        with self.lock:
            summary = self.summary
            summary["sent"] += 1
            summary["ms_max"] = max(summary["ms_max"], r["ms"])
            if r["ok"]:
                summary["ok"] += 1
                summary["answers"][r["answer"]] = summary["answers"].get(r["answer"], 0) + 1
                if self.until is not None and self.until <= summary["answers"].keys():
                    self.stop = True
            else:
                self.error(r["error"])
                self.stop = self.stop or self.fail_fast

    def stream(self, inherited: str | None) -> None:
        netns.inherit(inherited)  # a new thread is where its creator was
        try:
            enter_netns(self.job.get("netns"))
        except (OSError, ValueError) as err:
            with self.lock:
                self.stop = True
                self.error(str(err))
            return
        job = self.job
        while (timeout := self.ticket()) is not None:
            self.record(attempt(job["mode"], job["host"], int(job["port"]), job.get("arg", ""),
                                timeout))


def run_job(job: dict[str, Any], deadline: float) -> dict[str, Any]:
    """One job of a batch: up to `count` requests over up to `streams` connections at once,
    summarised. It stops at the first failure (`fail_fast`) or once every answer in `until`
    was seen; never more than `count` requests, none after the deadline."""
    state = _Job(job, deadline)
    if job.get("mode") not in MODES:
        state.error(f"unknown mode {job.get('mode')!r}")
        return state.summary
    if not allowed(str(job["host"])):
        state.error(f"refused to probe {job['host']}: not a lab address")
        return state.summary
    streams = max(1, min(int(job.get("streams", 1)), MAX_STREAMS, state.count))
    here = current_netns()
    helpers = [threading.Thread(target=state.stream, args=(here,), daemon=True)
               for _ in range(streams - 1)]
    for t in helpers:
        t.start()
    state.stream(here)
    for t in helpers:
        t.join()
    return state.summary


def encode_jobs(jobs: list[dict[str, Any]]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(jobs).encode())).decode()


def decode_jobs(text: str) -> list[dict[str, Any]]:
    return list(json.loads(zlib.decompress(base64.b64decode(text))))


def run_batch(jobs: list[dict[str, Any]], deadline_s: float, workers: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + deadline_s
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs) or 1))) as pool:
        return list(pool.map(lambda job: run_job(job, deadline), jobs))


def batch_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="probe batch", description="many probes, one process")
    parser.add_argument("jobs", help="base64 of zlib-compressed JSON: a list of jobs")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds for the batch")
    parser.add_argument("--workers", type=int, default=16, help="jobs run at once")
    args = parser.parse_args(argv)
    if not 0 < args.deadline <= MAX_DEADLINE or not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--deadline must be 0-{MAX_DEADLINE} and --workers 1-{MAX_WORKERS}")
    try:
        jobs = decode_jobs(args.jobs)
    except (ValueError, zlib.error) as err:
        parser.error(f"cannot read the jobs: {err}")
    print(json.dumps(run_batch(jobs, args.deadline, args.workers)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["batch"]:
        return batch_main(argv[1:])
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
    if not allowed(args.host):
        parser.error(f"{args.host} is not a lab address (private or loopback)")
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
