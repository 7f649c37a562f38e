"""One query in, one reply out: the rcodes, sections and sizes the cluster DNS answers with.

Authoritative only: names in the cluster domain and the lab's reverse names
are answered from the zone (AA set; NXDOMAIN or NODATA carry the zone's SOA
in the authority section, RFC 2308); any other name is REFUSED, since this
server forwards nothing, ever (nothing may leave the lab). RA stays clear, as
CoreDNS's kubernetes answers show it ("recursion requested but not available").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from generator.node.dns.message import (
    ANY,
    BADVERS,
    FORMERR,
    IN,
    NOERROR,
    NOTIMP,
    NS,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    SOA,
    SRV,
    A,
    Edns,
    Message,
    Record,
    Srv,
    decode,
    encode,
    header_of,
)
from generator.node.dns.names import FormatError
from generator.node.dns.records import ClusterZone

UDP_FLOOR = 512  # RFC 1035's limit without EDNS
UDP_CEILING = 4096  # never more in one datagram, whatever a client offers
ZONE_TRANSFERS = (251, 252)  # IXFR, AXFR: refused, as CoreDNS does without its transfer plugin


@dataclass
class Exchange:
    """What one message brought: its query (None if unreadable) and the reply sent (None: no reply)."""

    query: Message | None
    reply: Message | None
    wire: bytes | None


def udp_limit(query: Message) -> int:
    if query.edns is None:
        return UDP_FLOOR
    return max(UDP_FLOOR, min(query.edns.payload, UDP_CEILING))


def _negative(reply: Message, zone: ClusterZone, where: str, rcode: int) -> Message:
    apex, soa = zone.soa(where)
    reply.rcode = rcode
    reply.authority = [Record(apex, SOA, soa.minimum, soa)]
    return reply


def _additional(zone: ClusterZone, answers: list[Record]) -> list[Record]:
    """A records of the names SRV and NS answers point to (the spec's "may include")."""
    extra: list[Record] = []
    for record in answers:
        target = record.data.target if isinstance(record.data, Srv) else record.data
        if record.rtype not in (SRV, NS) or not isinstance(target, str):
            continue
        for ip in (zone.lookup(target) or {}).get(A, []):
            extra.append(Record(target, A, zone.ttl(A), ip))
    return list(dict.fromkeys(extra))


def answer(query: Message, zone: ClusterZone) -> Message:
    """The reply to a well-formed query."""
    reply = Message(id=query.id, qr=True, opcode=query.opcode, rd=query.rd, cd=query.cd,
                    questions=query.questions[:1])
    if query.edns is not None:
        reply.edns = Edns(payload=udp_limit(query))
        if query.edns.version != 0:
            reply.rcode = BADVERS  # RFC 6891 §6.1.3: only version 0 exists
            return reply
    if query.opcode != 0:
        reply.rcode = NOTIMP
        return reply
    if len(query.questions) != 1:
        reply.rcode = FORMERR
        return reply
    question = query.questions[0]
    where = zone.where(question.name)
    if question.qclass not in (IN, ANY) or where == "outside" or question.qtype in ZONE_TRANSFERS:
        reply.rcode = REFUSED
        return reply
    reply.aa = True
    rrsets = zone.lookup(question.name)
    if rrsets is None:
        return _negative(reply, zone, where, NXDOMAIN)
    wanted = sorted(rrsets) if question.qtype == ANY else [question.qtype]
    reply.answers = [Record(question.name, rtype, zone.ttl(rtype), data)
                     for rtype in wanted for data in rrsets.get(rtype, [])]
    if not reply.answers:
        return _negative(reply, zone, where, NOERROR)  # NODATA: the name exists, not this type
    reply.additional = _additional(zone, reply.answers)
    return reply


def _formerr(data: bytes) -> Message | None:
    header = header_of(data)
    if header is None or header[1] & 0x8000:
        return None  # nothing to answer to, or a response: never answer those (no loops)
    ident, flags = header
    return Message(id=ident, qr=True, opcode=(flags >> 11) & 0xF, rd=bool(flags & 0x100),
                   rcode=FORMERR)


def _fit(reply: Message, limit: int) -> tuple[Message, bytes]:
    """The reply within `limit` bytes: first without the additional section
    (no TC needed, RFC 2181 §9), else header and question only, with TC set."""
    for shorter in (reply, replace(reply, additional=[]),
                    replace(reply, additional=[], answers=[], authority=[], tc=True)):
        wire = encode(shorter)
        if len(wire) <= limit:
            break
    return shorter, wire


def handle(data: bytes, zone: ClusterZone | None, udp: bool) -> Exchange:
    """The bytes to send back for the bytes that arrived (never raises).
    Without a zone yet (no readable input), every query gets SERVFAIL."""
    try:
        query = decode(data)
    except FormatError:
        reply = _formerr(data)
        return Exchange(None, reply, encode(reply) if reply else None)
    if query.qr:
        return Exchange(query, None, None)
    if zone is None:
        reply = Message(id=query.id, qr=True, opcode=query.opcode, rd=query.rd, rcode=SERVFAIL,
                        questions=query.questions[:1])
        return Exchange(query, reply, encode(reply))
    try:
        reply, wire = _fit(answer(query, zone), udp_limit(query) if udp else 65535)
    except ValueError:  # a name that cannot be written back (e.g. over 255 octets once escaped)
        reply = Message(id=query.id, qr=True, opcode=query.opcode, rd=query.rd, rcode=SERVFAIL)
        wire = encode(reply)
    return Exchange(query, reply, wire)
