"""A pod's own DNS lookup, as its resolver makes it, for `kgen trace SRC NAME`.

The pod's resolv.conf (/etc/netns/<pod>/resolv.conf, the one `ip netns exec`
binds over /etc/resolv.conf) gives the server, the search list and ndots; the
names are asked in glibc's order (generator.node.dns.resolvconf.search_names),
one A query each, all from the trace's source port on one socket so that the
first query is the flow the trace follows through kube-proxy's DNAT. As glibc
does, the search goes on after NXDOMAIN or an empty answer and stops at the
first address or at any other answer (REFUSED, SERVFAIL, ...).
"""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path

from generator.node.dns.message import (
    NOERROR,
    NXDOMAIN,
    RCODE_NAMES,
    A,
    Message,
    Question,
    decode,
    encode,
)
from generator.node.dns.resolvconf import parse_resolv_conf, search_names

NETNS_ETC = Path("/etc/netns")
DNS_PORT = 53


def pod_resolver_file(pod: str) -> Path:
    return NETNS_ETC / pod / "resolv.conf"


def _ask(sock: socket.socket, name: str, deadline: float) -> Message:
    """One A query and its answer (the reply with the query's id)."""
    query_id = secrets.randbelow(0x10000)
    sock.send(encode(Message(id=query_id, rd=True, questions=[Question(name, A)])))
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        reply = decode(sock.recv(65535))
        if reply.id == query_id and reply.qr:
            return reply


def lookup(resolv_conf: str, name: str, sport: int, timeout: float,
           port: int = DNS_PORT) -> dict[str, object]:
    """Resolve `name` as the pod's resolver would (from source port `sport`; 0: any);
    the answer as a TraceLookupAnswer, or raises OSError (timed out, refused by ICMP)."""
    resolver = parse_resolv_conf(resolv_conf)
    if not resolver.nameservers:
        raise OSError(0, "no nameserver in the pod's resolv.conf")
    server = resolver.nameservers[0]
    tried: list[dict[str, object]] = []
    rcode, answers, asked = NOERROR, [], name
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("", sport))
        sock.connect((server, port))  # connected: an ICMP error shows as ECONNREFUSED
        for asked in search_names(name, resolver.search, resolver.ndots):
            reply = _ask(sock, asked, deadline)
            rcode = reply.rcode
            answers = [str(r.data) for r in reply.answers if r.rtype == A]
            tried.append({"name": asked, "rcode": RCODE_NAMES.get(rcode, str(rcode)),
                          "answers": answers})
            if answers or rcode not in (NOERROR, NXDOMAIN):
                break
    return {"name": asked, "server": f"{server}:{port}", "answers": answers,
            "rcode": RCODE_NAMES.get(rcode, str(rcode)), "tried": tried}
