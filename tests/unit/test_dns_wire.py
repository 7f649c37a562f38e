"""DNS messages byte by byte (RFC 1035 §4, RFC 6891): hand-assembled packets,
compression pointers both ways, and malformed input that must get FORMERR or
silence, never an exception."""

from __future__ import annotations

import random
import struct

import pytest

from generator.node.dns.answer import handle
from generator.node.dns.message import (
    FORMERR,
    IN,
    NXDOMAIN,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Edns,
    Message,
    Question,
    Record,
    Soa,
    Srv,
    decode,
    encode,
)
from generator.node.dns.names import FormatError, read_name, split_labels
from generator.node.dns.records import ClusterZone

WEB = b"\x03web\x07default\x03svc\x07cluster\x05local\x00"
# dig's query for web.default.svc.cluster.local A: id 0x1234, RD and AD set, one OPT
# record (payload 1232, version 0, no options), exactly as it goes on the wire.
DIG_QUERY = (b"\x12\x34\x01\x20\x00\x01\x00\x00\x00\x00\x00\x01" + WEB + b"\x00\x01\x00\x01"
             + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")


def zone() -> ClusterZone:
    return ClusterZone({"domain": "cluster.local", "namespaces": ["default"], "pods": [],
                        "reverseCIDRs": ["10.96.0.0/12"], "nameserver": None,
                        "services": [{"name": "web", "namespace": "default", "clusterIP": "10.96.0.20",
                                      "ports": [], "endpoints": []}]})


def test_a_dig_query_decodes_field_by_field() -> None:
    query = decode(DIG_QUERY)
    assert (query.id, query.qr, query.rd, query.ad, query.opcode) == (0x1234, False, True, True, 0)
    assert query.questions == [Question("web.default.svc.cluster.local", A, IN)]
    assert query.edns == Edns(payload=1232, version=0, dnssec_ok=False, ext_rcode=0, options=b"")
    assert query.additional == []  # the OPT record lives in .edns, not among the records


def test_the_same_query_encodes_to_the_same_bytes() -> None:
    assert encode(decode(DIG_QUERY)) == DIG_QUERY


def test_the_answer_names_point_back_at_the_question() -> None:
    wire = handle(DIG_QUERY, zone(), udp=True).wire
    assert wire is not None
    answer_at = 12 + len(WEB) + 4
    # owner name: a pointer (0xC0) to offset 12, where the question's name starts
    assert wire[answer_at:answer_at + 2] == b"\xc0\x0c"
    assert wire[answer_at + 2:answer_at + 12] == struct.pack("!HHIH", A, IN, 5, 4)
    assert wire[answer_at + 12:answer_at + 16] == bytes([10, 96, 0, 20])
    # then the OPT record echoing the payload size: root name, type 41, class 1232
    assert wire[answer_at + 16:answer_at + 21] == b"\x00\x00\x29\x04\xd0"


def test_suffixes_are_shared_between_names_and_read_back() -> None:
    reply = Message(id=9, qr=True, questions=[Question("20.0.96.10.in-addr.arpa", PTR)],
                    answers=[Record("20.0.96.10.in-addr.arpa", PTR, 5, "web.default.svc.cluster.local")],
                    authority=[Record("cluster.local", SOA, 5, Soa("ns.dns.cluster.local",
                                      "hostmaster.cluster.local", 7, 7200, 1800, 86400, 5))])
    wire = encode(reply)
    assert wire.count(b"\x07cluster\x05local") == 1  # written once, pointed at afterwards
    assert wire.count(b"in-addr") == 1
    assert decode(wire) == reply


def test_every_record_type_round_trips() -> None:
    records = [Record("a.cluster.local", A, 5, "10.1.2.3"),
               Record("_http._tcp.web.default.svc.cluster.local", SRV, 5,
                      Srv(0, 33, 8080, "10-1-2-3.web.default.svc.cluster.local")),
               Record("dns-version.cluster.local", TXT, 28800, (b"1.1.0", b"")),
               Record("x.cluster.local", 99, 5, b"\x01\x02\x03")]
    message = Message(id=1, qr=True, aa=True, rcode=NXDOMAIN, answers=records, edns=Edns(payload=4096))
    assert decode(encode(message)) == message


def test_srv_targets_are_never_compressed() -> None:
    target = "web.default.svc.cluster.local"
    wire = encode(Message(answers=[Record(target, SRV, 5, Srv(0, 100, 80, target))]))
    assert wire.endswith(struct.pack("!HHH", 0, 100, 80) + WEB)  # RFC 2782: the target in full


def test_odd_labels_survive_the_round_trip() -> None:
    labels = [b"a.b", b"back\\slash", b"\x00\xff sp"]
    wire = b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
    name, end = read_name(wire, 0)
    assert end == len(wire)
    assert split_labels(name) == labels


def test_an_extended_rcode_goes_into_the_opt_record() -> None:
    query = decode(DIG_QUERY[:-6] + b"\x00\x01\x00\x00\x00\x00")  # EDNS version 1
    reply = handle(encode(query), zone(), udp=True)
    assert reply.wire is not None
    back = decode(reply.wire)
    assert back.rcode == 16 and back.edns is not None  # BADVERS: header 0, OPT's upper bits 1
    assert reply.wire[3] & 0xF == 0


@pytest.mark.parametrize(("name", "wire"), [
    ("a pointer to itself", b"\xc0\x0c"),
    ("a pointer forwards", b"\xc0\x20" + b"\x00" * 30),
    ("two pointers in a loop", b"\x01a\xc0\x0e\x01b\xc0\x0c"),
    ("a label past the end", b"\x3fabc"),
    ("the 0x40 label type", b"\x41abc\x00"),
    ("a cut pointer", b"\xc0"),
    ("a name over 255 octets", (b"\x3f" + b"x" * 63) * 4 + b"\x00"),
])
def test_bad_names_are_format_errors(name: str, wire: bytes) -> None:
    with pytest.raises(FormatError):
        read_name(b"\x00" * 12 + wire, 12)


@pytest.mark.parametrize(("what", "data"), [
    ("a question cut short", DIG_QUERY[:12 + len(WEB) + 2]),
    ("bytes after the last record", DIG_QUERY + b"\x00"),
    ("an OPT record cut short", DIG_QUERY[:-3]),
    ("a count past the records", b"\x12\x34\x01\x00\x00\x02" + DIG_QUERY[6:]),
    ("two OPT records",
     b"\x12\x34\x01\x20\x00\x01\x00\x00\x00\x00\x00\x02" + DIG_QUERY[12:] + DIG_QUERY[-11:]),
])
def test_malformed_queries_get_formerr_with_their_id(what: str, data: bytes) -> None:
    exchange = handle(data, zone(), udp=True)
    assert exchange.wire is not None, what
    reply = decode(exchange.wire)
    assert (reply.id, reply.qr, reply.rcode, reply.rd) == (0x1234, True, FORMERR, True)


def test_no_reply_to_a_runt_or_to_a_response() -> None:
    assert handle(b"\x12\x34\x01", zone(), udp=True).wire is None
    response = bytearray(DIG_QUERY)
    response[2] |= 0x80  # QR: answering responses could make two servers talk forever
    assert handle(bytes(response), zone(), udp=True).wire is None


def test_random_damage_never_raises_and_always_answers_well_formed() -> None:
    rng = random.Random(23)
    seen = set()
    for _ in range(3000):
        data = bytearray(DIG_QUERY)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[:rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        exchange = handle(cut, zone(), udp=True)
        if exchange.wire is not None:
            reply = decode(exchange.wire)
            assert reply.qr and len(exchange.wire) <= 512
            seen.add(reply.rcode)
    assert FORMERR in seen and len(seen) >= 3  # the damage reached more than the parser
