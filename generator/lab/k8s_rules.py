"""Kubernetes' own value rules (apimachinery's util/validation), worded as kgen words errors.

Each function returns the problems of one value as messages ([] when it is
valid), for the caller to attach to its field path.
"""

from __future__ import annotations

import ipaddress
import re

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PORT_NAME = re.compile(r"^[-a-z0-9]+$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def dns_label(value: str) -> list[str]:
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if not _DNS_LABEL.match(value):
        return ["must be a DNS-1123 label: lower-case letters, digits and '-', starting and "
                "ending with a letter or digit"]
    return []


def dns_subdomain(value: str) -> list[str]:
    if len(value) > 253:
        return ["must be no more than 253 characters"]
    if not _DNS_SUBDOMAIN.match(value):
        return ["must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit"]
    return []


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: `[prefix/]name` (IsQualifiedName)."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name is at most one DNS subdomain prefix, '/', and a name"]
    name = parts[-1]
    problems = []
    if len(parts) == 2:
        if not parts[0]:
            problems.append("prefix part must be non-empty")
        else:
            problems += [f"prefix part {m}" for m in dns_subdomain(parts[0])]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_PART.match(name):
        problems.append("name part must be letters, digits, '-', '_' and '.', starting and "
                        "ending with a letter or digit")
    return problems


def label_value(value: str) -> list[str]:
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if not _LABEL_VALUE.match(value):
        return ["a label value must be empty or letters, digits, '-', '_' and '.', starting "
                "and ending with a letter or digit"]
    return []


def port_number(value: int) -> list[str]:
    return [] if 1 <= value <= 65535 else ["must be between 1 and 65535, inclusive"]


def port_name(value: str) -> list[str]:
    """An IANA_SVC_NAME (IsValidPortName)."""
    problems = []
    if not 1 <= len(value) <= 15:
        problems.append("must be no more than 15 characters" if value else "must not be empty")
    if not _PORT_NAME.match(value):
        problems.append("must contain only lower-case letters, digits and '-'")
    if not re.search("[a-z]", value):
        problems.append("must contain at least one letter (a-z)")
    if "--" in value:
        problems.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return problems


def parse_cidr(value: str) -> tuple[Network | None, list[str]]:
    """A CIDR as the API server reads legacy CIDR fields (ParseCIDRSloppy, StrictIPCIDRValidation
    off, its default): IPv4 octets may carry leading zeros (read as decimal) and bits beyond the
    prefix are allowed (the network is what counts)."""
    address, slash, prefix = value.partition("/")
    bad = f"must be a valid CIDR value (e.g. 10.9.8.0/24 or 2001:db8::/64), not {value!r}"
    if not slash or not prefix.isdigit() or not address:
        return None, [bad]
    if ":" not in address:
        octets = address.split(".")
        if len(octets) != 4 or not all(o.isdigit() and len(o) <= 3 for o in octets):
            return None, [bad]
        address = ".".join(str(int(o)) for o in octets)
    try:
        return ipaddress.ip_network(f"{address}/{int(prefix)}", strict=False), []
    except ValueError:
        return None, [bad]


def strict_subset(inner: Network, outer: Network) -> bool:
    """ValidateIPBlock's test: the except's address inside cidr and its prefix longer."""
    return (inner.version == outer.version and inner.network_address in outer
            and inner.prefixlen > outer.prefixlen)
