"""DNS messages (RFC 1035 §4) with EDNS0 (RFC 6891): parse and write.

Record data is kept decoded for the types this server answers with (A, AAAA,
NS, CNAME, PTR, SOA, TXT, SRV) so that names inside it are compressed and
compared like any other name; any other type keeps its raw bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from generator.node.dns.names import FormatError, NameWriter, read_name

A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, OPT, ANY = 1, 2, 5, 6, 12, 16, 28, 33, 41, 255
IN = 1
TYPE_NAMES = {A: "A", NS: "NS", CNAME: "CNAME", SOA: "SOA", PTR: "PTR", TXT: "TXT",
              AAAA: "AAAA", SRV: "SRV", OPT: "OPT", ANY: "ANY"}
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16
RCODE_NAMES = {NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN",
               NOTIMP: "NOTIMP", REFUSED: "REFUSED", BADVERS: "BADVERS"}
HEADER = struct.Struct("!HHHHHH")
MAX_MESSAGE = 65535


def type_name(rtype: int) -> str:
    return TYPE_NAMES.get(rtype, f"TYPE{rtype}")


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Soa:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


RData = str | Srv | Soa | tuple[bytes, ...] | bytes  # A/AAAA/NS/CNAME/PTR text | SRV | SOA | TXT | raw


@dataclass(frozen=True)
class Question:
    name: str
    qtype: int
    qclass: int = IN


@dataclass(frozen=True)
class Record:
    name: str
    rtype: int
    ttl: int
    data: RData
    rclass: int = IN


@dataclass
class Edns:
    payload: int = 1232  # the largest UDP response the sender takes
    version: int = 0
    dnssec_ok: bool = False
    ext_rcode: int = 0  # the upper 8 bits of a 12-bit rcode
    options: bytes = b""


@dataclass
class Message:
    id: int = 0
    qr: bool = False
    opcode: int = 0
    aa: bool = False
    tc: bool = False
    rd: bool = False
    ra: bool = False
    ad: bool = False
    cd: bool = False
    rcode: int = NOERROR  # the full rcode; values above 15 need EDNS
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    edns: Edns | None = None

    def flags(self) -> int:
        bits = (self.qr << 15) | ((self.opcode & 0xF) << 11) | (self.aa << 10) | (self.tc << 9)
        return bits | (self.rd << 8) | (self.ra << 7) | (self.ad << 5) | (self.cd << 4) | (self.rcode & 0xF)


# ---------------------------------------------------------------- writing


def _write_rdata(out: NameWriter, record: Record) -> None:
    data, rtype = record.data, record.rtype
    if rtype == A and isinstance(data, str):
        out.buffer += ipaddress.IPv4Address(data).packed
    elif rtype == AAAA and isinstance(data, str):
        out.buffer += ipaddress.IPv6Address(data).packed
    elif rtype in (NS, CNAME, PTR) and isinstance(data, str):
        out.name(data)
    elif rtype == SRV and isinstance(data, Srv):
        out.buffer += struct.pack("!HHH", data.priority, data.weight, data.port)
        out.name(data.target, compress=False)  # RFC 2782: the target is never compressed
    elif rtype == SOA and isinstance(data, Soa):
        out.name(data.mname)
        out.name(data.rname)
        out.buffer += struct.pack("!IIIII", data.serial, data.refresh, data.retry,
                                  data.expire, data.minimum)
    elif rtype == TXT and isinstance(data, tuple):
        for chunk in data:
            out.buffer += bytes([len(chunk)]) + chunk
    elif isinstance(data, bytes):
        out.buffer += data
    else:
        raise ValueError(f"record data {data!r} does not fit type {type_name(rtype)}")


def _write_record(out: NameWriter, record: Record) -> None:
    out.name(record.name)
    out.buffer += struct.pack("!HHIH", record.rtype, record.rclass, record.ttl, 0)
    start = len(out.buffer)
    _write_rdata(out, record)
    struct.pack_into("!H", out.buffer, start - 2, len(out.buffer) - start)


def _opt_record(edns: Edns, rcode: int) -> Record:
    ttl = ((rcode >> 4) << 24) | (edns.version << 16) | (edns.dnssec_ok << 15)
    return Record("", OPT, ttl, edns.options, rclass=edns.payload)


def encode(message: Message) -> bytes:
    additional = list(message.additional)
    if message.edns is not None:
        additional.append(_opt_record(message.edns, message.rcode))
    out = NameWriter()
    out.buffer += HEADER.pack(message.id, message.flags(), len(message.questions),
                              len(message.answers), len(message.authority), len(additional))
    for question in message.questions:
        out.name(question.name)
        out.buffer += struct.pack("!HH", question.qtype, question.qclass)
    for record in [*message.answers, *message.authority, *additional]:
        _write_record(out, record)
    return bytes(out.buffer)


# ---------------------------------------------------------------- reading


def _read_rdata(data: bytes, start: int, length: int, rtype: int) -> RData:
    end = start + length
    raw = data[start:end]
    if rtype == A and length == 4:
        return str(ipaddress.IPv4Address(raw))
    if rtype == AAAA and length == 16:
        return str(ipaddress.IPv6Address(raw))
    if rtype in (NS, CNAME, PTR):
        name, stop = read_name(data, start)
        return name if stop == end else _bad("name data does not fill the record")
    if rtype == SRV and length >= 7:
        target, stop = read_name(data, start + 6)
        priority, weight, port = struct.unpack_from("!HHH", data, start)
        return Srv(priority, weight, port, target) if stop == end else _bad("SRV target length")
    if rtype == SOA:
        mname, at = read_name(data, start)
        rname, at = read_name(data, at)
        if at + 20 != end:
            return _bad("SOA data length")
        return Soa(mname, rname, *struct.unpack_from("!IIIII", data, at))
    if rtype == TXT:
        chunks, at = [], start
        while at < end:
            chunks.append(data[at + 1:at + 1 + data[at]])
            at += 1 + data[at]
        return tuple(chunks) if at == end else _bad("TXT strings overrun the record")
    if rtype in (A, AAAA, SRV):
        return _bad(f"{type_name(rtype)} data of {length} bytes")
    return raw


def _bad(what: str) -> RData:
    raise FormatError(what)


def _read_record(data: bytes, offset: int) -> tuple[Record, int]:
    name, offset = read_name(data, offset)
    if offset + 10 > len(data):
        raise FormatError("record header cut short")
    rtype, rclass, ttl, length = struct.unpack_from("!HHIH", data, offset)
    offset += 10
    if offset + length > len(data):
        raise FormatError("record data runs past the end of the message")
    return Record(name, rtype, ttl, _read_rdata(data, offset, length, rtype), rclass), offset + length


def _take_edns(message: Message, header_rcode: int) -> None:
    opts = [r for r in message.additional if r.rtype == OPT]
    if len(opts) > 1 or any(r.name for r in opts):
        raise FormatError("more than one OPT record, or one not owned by the root")
    message.additional = [r for r in message.additional if r.rtype != OPT]
    if opts:
        opt = opts[0]
        message.edns = Edns(payload=opt.rclass, version=(opt.ttl >> 16) & 0xFF,
                            dnssec_ok=bool(opt.ttl & 0x8000), ext_rcode=opt.ttl >> 24,
                            options=opt.data if isinstance(opt.data, bytes) else b"")
        message.rcode = (message.edns.ext_rcode << 4) | header_rcode


def decode(data: bytes) -> Message:
    """The message in `data`; FormatError when it is not a well-formed one."""
    if len(data) < HEADER.size:
        raise FormatError("shorter than a DNS header")
    ident, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    message = Message(id=ident, qr=bool(flags & 0x8000), opcode=(flags >> 11) & 0xF,
                      aa=bool(flags & 0x400), tc=bool(flags & 0x200), rd=bool(flags & 0x100),
                      ra=bool(flags & 0x80), ad=bool(flags & 0x20), cd=bool(flags & 0x10),
                      rcode=flags & 0xF)
    offset = HEADER.size
    for _ in range(qd):
        name, offset = read_name(data, offset)
        if offset + 4 > len(data):
            raise FormatError("question cut short")
        message.questions.append(Question(name, *struct.unpack_from("!HH", data, offset)))
        offset += 4
    for count, section in ((an, message.answers), (ns, message.authority), (ar, message.additional)):
        for _ in range(count):
            record, offset = _read_record(data, offset)
            section.append(record)
    if offset != len(data):
        raise FormatError(f"{len(data) - offset} bytes after the last record")
    _take_edns(message, flags & 0xF)
    return message


def header_of(data: bytes) -> tuple[int, int] | None:
    """(id, flags) of whatever arrived, to answer FORMERR to; None without a header."""
    return HEADER.unpack_from(data)[:2] if len(data) >= HEADER.size else None
