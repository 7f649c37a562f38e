"""Domain names on the wire (RFC 1035 §3.1, §4.1.4) and in text.

A name is kept as its presentation text without the final dot ("" is the root),
with dig's escapes for the bytes a label may hold but text cannot show plainly:
`\\.` and `\\\\` for a dot or backslash inside a label, `\\DDD` for bytes outside
printable ASCII. So any name a query carries survives the round trip into the
echoed question section byte for byte, whatever it holds.
"""

from __future__ import annotations

MAX_NAME = 255  # octets on the wire, length bytes included (RFC 1035 §2.3.4)
MAX_LABEL = 63
POINTER = 0xC0


class FormatError(ValueError):
    """The message does not follow RFC 1035: the server answers FORMERR."""


def _escape(label: bytes) -> str:
    out = []
    for byte in label:
        char = chr(byte)
        if char in ".\\":
            out.append("\\" + char)
        elif 0x21 <= byte <= 0x7E:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def split_labels(name: str) -> list[bytes]:
    """The wire labels of a presentation name (escapes undone)."""
    if name in ("", "."):
        return []
    labels: list[bytes] = []
    current = bytearray()
    i = 0
    while i < len(name):
        char = name[i]
        if char == "\\" and name[i + 1:i + 4].isdigit() and len(name[i + 1:i + 4]) == 3:
            current.append(int(name[i + 1:i + 4]) & 0xFF)
            i += 4
            continue
        if char == "\\" and i + 1 < len(name):
            current += name[i + 1].encode("latin-1")
            i += 2
            continue
        if char == ".":
            labels.append(bytes(current))
            current = bytearray()
        else:
            current += char.encode("latin-1", errors="replace")
        i += 1
    if current or not name.endswith("."):
        labels.append(bytes(current))
    return labels


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` and the offset just after it (where a pointer, if
    any, was read). Pointers must go strictly backwards, which ends every loop."""
    labels: list[str] = []
    end = -1
    wire_length = 1
    limit = offset  # a pointer may only reach bytes before the label that holds it
    while True:
        if offset >= len(data):
            raise FormatError("name runs past the end of the message")
        length = data[offset]
        if length & POINTER == POINTER:
            if offset + 1 >= len(data):
                raise FormatError("compression pointer cut short")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if end < 0:
                end = offset + 2
            if target >= limit:
                raise FormatError("compression pointer does not point backwards")
            offset = limit = target
            continue
        if length & POINTER:
            raise FormatError(f"unsupported label type 0x{length & POINTER:02x}")
        if length == 0:
            return ".".join(labels), (end if end >= 0 else offset + 1)
        wire_length += length + 1
        if wire_length > MAX_NAME:
            raise FormatError("name longer than 255 octets")
        label = data[offset + 1:offset + 1 + length]
        if len(label) < length:
            raise FormatError("label runs past the end of the message")
        labels.append(_escape(label))
        offset += length + 1


class NameWriter:
    """Writes names with compression: each suffix already written becomes a pointer."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self._offsets: dict[tuple[bytes, ...], int] = {}

    def name(self, name: str, compress: bool = True) -> None:
        labels = split_labels(name)
        if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME:
            raise ValueError(f"name longer than 255 octets: {name}")
        for i in range(len(labels)):
            if len(labels[i]) > MAX_LABEL or not labels[i]:
                raise ValueError(f"bad label in {name!r}")
            key = tuple(label.lower() for label in labels[i:])
            if compress and key in self._offsets:
                self.buffer += (0xC000 | self._offsets[key]).to_bytes(2, "big")
                return
            if len(self.buffer) < 0x4000:
                self._offsets.setdefault(key, len(self.buffer))
            self.buffer.append(len(labels[i]))
            self.buffer += labels[i]
        self.buffer.append(0)
