"""The documents of CNI 1.0.0 that kgen's plugins and runtime exchange, by the spec's
field names: the network configuration (and its list), the IPAM section, the result,
and the error object. Only fields kgen reads or writes are listed; the JSON on the
wire carries whatever the runtime sent, these types only say what the code relies on.
"""

from __future__ import annotations

from typing import NotRequired, Required, TypedDict


class Route(TypedDict):
    """A route of a result or of `ipam.routes`: `gw` absent means the interface's gateway."""

    dst: str
    gw: NotRequired[str]


class IpamRange(TypedDict, total=False):
    """One range of host-local's `ranges` (or the flat `subnet` form of `ipam`)."""

    subnet: Required[str]
    rangeStart: str
    rangeEnd: str
    gateway: str


class IpamConf(TypedDict, total=False):
    """The `ipam` section; `type` names the IPAM plugin (host-local's own keys follow)."""

    type: str
    subnet: str
    rangeStart: str
    rangeEnd: str
    gateway: str
    ranges: list[list[IpamRange]]
    routes: list[Route]
    dataDir: str


class IPConfig(TypedDict):
    """An entry of a result's `ips`: `interface` indexes the result's `interfaces`."""

    address: str
    gateway: NotRequired[str]
    interface: NotRequired[int]


class Interface(TypedDict):
    name: str
    mac: str
    sandbox: NotRequired[str]


class Dns(TypedDict, total=False):
    nameservers: list[str]
    domain: str
    search: list[str]
    options: list[str]


class CniResult(TypedDict, total=False):
    """What ADD prints (and a chained plugin receives as `prevResult`)."""

    cniVersion: Required[str]
    interfaces: list[Interface]
    ips: list[IPConfig]
    routes: list[Route]
    dns: Dns


class CniArgs(TypedDict, total=False):
    """`args.cni` of a configuration: the `ips` convention for static addresses."""

    ips: list[str]


class ConfArgs(TypedDict, total=False):
    cni: CniArgs


class RuntimeConfig(TypedDict, total=False):
    """Capability arguments the runtime fills in (`ips`)."""

    ips: list[str]


class NetConf(TypedDict, total=False):
    """One plugin's network configuration, as the plugin reads it from stdin.

    The bridge plugin's own keys (bridge ... ipMasq) sit beside the spec's.
    """

    cniVersion: str
    name: str
    type: str
    ipam: IpamConf
    prevResult: CniResult
    args: ConfArgs
    runtimeConfig: RuntimeConfig
    bridge: str
    isGateway: bool
    isDefaultGateway: bool
    hairpinMode: bool
    promiscMode: bool
    ipMasq: bool
    mtu: int


class NetConfList(TypedDict):
    """A network configuration list (`.conflist`): the plugins run in order."""

    cniVersion: str
    name: str
    plugins: list[NetConf]


class ErrorDoc(TypedDict):
    """The error object a plugin prints (exit status 1)."""

    cniVersion: str
    code: int
    msg: str
    details: NotRequired[str]
