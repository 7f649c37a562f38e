"""Many DNS lookups from one pod in one process, for `kgen check`'s DNS checks.

`ip netns exec POD python3 -m generator.node.dns.lookup JOB` where JOB is JSON:
`{"names": [NAME, ...], "queries": [{"server": IP|null, "name", "type": "A"|"SRV"}],
"timeout": S}`. It prints one JSON object:
`{"names": {NAME: {"ips": [...], "error": str|null}}, "queries": [{"rcode", "answers",
"error"}]}`.

- `names` go through glibc's getaddrinfo, so the pod's own /etc/resolv.conf (which
  `ip netns exec` binds from /etc/netns/POD) decides everything: the nameserver, the
  search path, ndots. Only the retry timing is bounded (RES_OPTIONS), so a broken DNS
  costs seconds, not the default 5 s × 2 attempts per search-list entry.
- `queries` are single raw queries (one UDP datagram, re-sent on timeout) to `server`,
  or to resolv.conf's first nameserver when it is null: for what getaddrinfo hides,
  the rcode (REFUSED) and SRV records.
Servers must be lab (private) addresses; nothing else is asked.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generator.node.dns.message import SRV, A, Message, Question, Srv, decode, encode

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPES = {"A": A, "SRV": SRV}
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                             "100.64.0.0/10")]
WORKERS = 16
MAX_TIMEOUT = 10.0


def nameserver(resolv_conf: str = "/etc/resolv.conf") -> str | None:
    try:
        with open(resolv_conf) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    return fields[1]
    except OSError:
        return None
    return None


def resolve(name: str) -> dict[str, Any]:
    """The IPv4 addresses getaddrinfo gives for `name`, or its error."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as err:
        return {"ips": [], "error": err.strerror or str(err)}
    return {"ips": sorted({str(info[4][0]) for info in infos}, key=ipaddress.IPv4Address),
            "error": None}


def _rdata(data: object) -> str:
    if isinstance(data, Srv):
        # Presentation form, as dig prints it: the target absolute, with its dot.
        return f"{data.priority} {data.weight} {data.port} {data.target.rstrip('.')}."
    return str(data)


def ask(server: str | None, name: str, qtype: str, timeout: float) -> dict[str, Any]:
    """One query to `server` (a private address): its rcode and answers, or an error."""
    server = server or nameserver()
    if server is None:
        return {"rcode": None, "answers": [], "error": "no nameserver in /etc/resolv.conf"}
    if not any(ipaddress.ip_address(server) in net for net in PRIVATE):
        return {"rcode": None, "answers": [], "error": f"{server} is not a lab address"}
    ident = random.randrange(65536)
    wire = encode(Message(id=ident, rd=True, questions=[Question(name, TYPES[qtype])]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout / 2)
        try:
            sock.connect((server, 53))
            for _ in range(2):  # one re-send: a datagram lost on a busy host is not a failure
                sock.send(wire)
                try:
                    reply = decode(sock.recv(65535))
                except TimeoutError:
                    continue
                except ValueError as err:  # FormatError: not a DNS message
                    return {"rcode": None, "answers": [], "error": f"unreadable reply: {err}"}
                if reply.id == ident:
                    return {"rcode": RCODES.get(reply.rcode, str(reply.rcode)), "error": None,
                            "answers": sorted(_rdata(r.data) for r in reply.answers
                                              if r.rtype == TYPES[qtype])}
        except OSError as err:
            return {"rcode": None, "answers": [], "error": (err.strerror or str(err)).lower()}
    return {"rcode": None, "answers": [], "error": "timed out"}


def run(job: dict[str, Any]) -> dict[str, Any]:
    timeout = min(float(job.get("timeout", 4.0)), MAX_TIMEOUT)
    # glibc reads RES_OPTIONS at its first lookup: bounded retries, the search path untouched.
    os.environ["RES_OPTIONS"] = f"timeout:{max(1, int(timeout / 2))} attempts:2"
    names = list(dict.fromkeys(job.get("names", [])))
    queries = job.get("queries", [])
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        resolved = pool.map(resolve, names)
        asked = pool.map(lambda q: ask(q.get("server"), q["name"], q["type"], timeout), queries)
        return {"names": dict(zip(names, resolved, strict=True)), "queries": list(asked)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m generator.node.dns.lookup JOB_JSON", file=sys.stderr)
        return 2
    try:
        job = json.loads(args[0])
    except ValueError as err:
        print(f"lookup: bad job: {err}", file=sys.stderr)
        return 2
    print(json.dumps(run(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
