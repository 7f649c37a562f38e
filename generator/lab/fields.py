"""Typed field readers for the lab file that know where they are.

Every reader takes the parent mapping, the key and the field path of the
parent, and raises `LabError` naming the full path (`services[1].ports[0].nodePort`)
so that a bad lab file is reported in one line.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from generator.lab.errors import LabError

MISSING: Any = object()


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def describe(value: Any) -> str:
    """A short, quoted rendering of a bad value for error lines."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def mapping(value: Any, path: str, allowed: set[str]) -> Mapping[str, Any]:
    """Check that `value` is a mapping with only `allowed` keys."""
    if not isinstance(value, Mapping):
        raise LabError(path, f"expected a mapping, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise LabError(path, f"keys must be strings, got {describe(key)}")
        if key not in allowed:
            raise LabError(join(path, key), f"unknown key ({_suggest(key, allowed)})")
    return value


def _suggest(key: str, allowed: set[str]) -> str:
    lowered = {k.lower(): k for k in allowed}
    close = difflib.get_close_matches(key.lower(), sorted(lowered), n=1, cutoff=0.6)
    if close:
        return f"did you mean {lowered[close[0]]!r}?"
    return "known keys: " + ", ".join(sorted(allowed))


def get(obj: Mapping[str, Any], key: str, path: str, kind: type, default: Any = MISSING) -> Any:
    """obj[key] checked against `kind` (int excludes bool); default when absent."""
    here = join(path, key)
    if key not in obj or obj[key] is None:
        if default is MISSING:
            raise LabError(here, "is required")
        return default
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise LabError(here, f"expected {_kind_name(kind)}, got {describe(value)}")
    return value


def _kind_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        list: "a list",
        dict: "a mapping",
        Mapping: "a mapping",
        bool: "true or false",
    }.get(kind, kind.__name__)


def choice(obj: Mapping[str, Any], key: str, path: str, options: tuple[str, ...]) -> str:
    value = get(obj, key, path, str, options[0])
    if value not in options:
        raise LabError(join(path, key), f"{describe(value)} is not one of {', '.join(options)}")
    return str(value)


def int_range(obj: Mapping[str, Any], key: str, path: str, low: int, high: int,
              default: Any = MISSING) -> Any:
    value = get(obj, key, path, int, default)
    given = obj.get(key) is not None
    if given and not low <= value <= high:
        raise LabError(join(path, key), f"{value} is outside {low}-{high}")
    return value


def network(obj: Mapping[str, Any], key: str, path: str, default: str | None) -> Any:
    """An IPv4 CIDR with no host bits set."""
    text = get(obj, key, path, str, default)
    if text is None:
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise LabError(join(path, key),
                       f"{describe(text)} is not a CIDR such as 10.244.0.0/16") from None
    if "/" not in text:
        raise LabError(join(path, key), f"{describe(text)} needs a prefix length, as in {net}")
    if net.version != 4:
        raise LabError(join(path, key), f"{describe(text)} is not IPv4 (kgen labs are IPv4)")
    if str(net) != text.strip():
        raise LabError(join(path, key), f"{describe(text)} has host bits set; did you mean {net}?")
    return net


# DNS-1123 label: what Kubernetes requires of pod, service and port names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Node and client names become container names and hostnames: keep them short.
_HOST_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def dns_label(value: str, path: str, max_len: int = 63) -> str:
    if not _DNS_LABEL.match(value) or len(value) > max_len:
        raise LabError(path, f"{describe(value)} is not a valid name (lower-case letters, "
                             f"digits and '-', starting and ending alphanumeric, "
                             f"at most {max_len} characters)")
    return value


def host_name(value: str, path: str, max_len: int) -> str:
    if not _HOST_NAME.match(value) or len(value) > max_len:
        raise LabError(path, f"{describe(value)} is not a valid name (a lower-case letter, then "
                             f"letters, digits and '-', at most {max_len} characters)")
    return value


def labels(obj: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    raw = get(obj, key, path, Mapping, {})
    out: dict[str, str] = {}
    for name, value in raw.items():
        here = f"{join(path, key)}.{name}"
        if not isinstance(name, str) or not _LABEL_KEY.match(name) or len(name) > 253:
            raise LabError(here, f"{describe(name)} is not a valid label key")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise LabError(here, f"expected a string, got {describe(value)}")
        text = str(value)
        if not _LABEL_VALUE.match(text) or len(text) > 63:
            raise LabError(here, f"{describe(text)} is not a valid label value")
        out[name] = text
    return out
