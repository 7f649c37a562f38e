"""The lab file's structure, declared once as a JSON Schema (draft-07).

The same document validates every lab file (`generator.lab.validate`) and is
what `kgen schema` prints for editors (yaml-language-server supports draft-07).
Checks a schema cannot express (CIDR arithmetic, overlaps, names unique across
lists, placement) live in `generator.lab.checks`.
"""

from __future__ import annotations

from typing import Any

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
SCHEMA_ID = "https://kgen.invalid/schemas/lab.schema.json"

NODE_PORT_RANGE = (30000, 32767)
LAB_NAME_MAX = 20  # names end up in container names (kgen-<lab>-<node>) and network names
NODE_NAME_MAX = 20

# Patterns, each with the words an error line uses for it.
HOST_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"  # node, client and lab names: container names
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # pods, services, ports: Kubernetes' DNS-1123 label
LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
DOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"  # clusterDomain
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
PATTERN_WORDS = {
    HOST_NAME: "a lower-case letter, then letters, digits and '-'",
    DNS_LABEL: "lower-case letters, digits and '-', starting and ending alphanumeric",
    DOMAIN: "a DNS domain: dot-separated labels of lower-case letters, digits and '-'",
    LABEL_KEY: "a label key: [prefix/]name of letters, digits, '-', '_' and '.'",
    LABEL_VALUE: "a label value: letters, digits, '-', '_' and '.', starting and ending "
                 "alphanumeric",
}
# minItems errors say what the list is for.
EMPTY_LIST_WORDS = {
    "nodes": "needs at least one entry",
    "ports": "needs at least one port",
    "command": "must not be empty (omit it for the test server)",
    "containers": "must not be empty (omit it for one container running the test server)",
}


def _name(pattern: str, max_len: int, description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, "maxLength": max_len, "description": description}


def _int(low: int, high: int, description: str, default: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high,
                           "description": description}
    if default is not None:
        doc["default"] = default
    return doc


def _enum(values: list[str], description: str) -> dict[str, Any]:
    return {"type": "string", "enum": values, "default": values[0], "description": description}


def _object(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "object", "description": description,
                           "properties": properties, "additionalProperties": False}
    if required:
        doc["required"] = required
    return doc


def _cidr(description: str, default: str | None = None) -> dict[str, Any]:
    # The address arithmetic (prefix, host bits, private space) is checked in Python.
    doc: dict[str, Any] = {"type": "string", "description": description}
    if default is not None:
        doc["default"] = default
    return doc


def _member_list(what: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """nodes and clients: a list of names, or of {name: ...} mappings."""
    name = {"$ref": "#/definitions/hostName"}
    return {"type": "array", "description": f"The lab's {what}: names, or mappings with a name.",
            "items": {"anyOf": [name, _object({"name": name, **(extra or {})}, ["name"],
                                              f"One of the {what}.")]}}


# A node's topology.kubernetes.io/zone: a label value (trafficDistribution uses it).
ZONE = {"type": "string", "pattern": LABEL_VALUE, "minLength": 1, "maxLength": 63,
        "description": "The node's topology.kubernetes.io/zone label (trafficDistribution)."}


LABELS = {"type": "object", "description": "Labels (key: value), as on a Kubernetes object.",
          "propertyNames": {"type": "string", "pattern": LABEL_KEY, "maxLength": 253},
          # An integer value is written as its digits: 0 up to 63 of them, as a value may hold.
          "additionalProperties": {"type": ["string", "integer"], "pattern": LABEL_VALUE,
                                   "minimum": 0, "maximum": 10 ** 63 - 1,
                                   "maxLength": 63}}

CONTAINER_PORT = _object({
    # An IANA_SVC_NAME; the rules a pattern cannot say are in generator.lab.pod_ports.
    "name": _name(DNS_LABEL, 15, "The port's name, for NetworkPolicy ports (unique in the pod)."),
    "containerPort": _int(1, 65535, "The port the container listens on."),
    "protocol": _enum(["TCP", "UDP", "SCTP"], "TCP (default), UDP or SCTP."),
}, ["containerPort"], "A port the container declares, as in a Kubernetes container.")

CONTAINER = _object({
    "name": {"$ref": "#/definitions/dnsLabel"},
    "command": {"type": "array", "minItems": 1,
                # A number is written as its digits: a 64-bit one at most.
                "items": {"type": ["string", "number"], "minimum": -2 ** 63,
                          "maximum": 2 ** 63 - 1},
                "description": "argv; a container without one runs the pod test server."},
    "ports": {"type": "array", "items": CONTAINER_PORT,
              "description": "Declared ports; the test server's are always `http` 8080/TCP and "
                             "`udp` 8081/UDP."},
}, ["name"], "One process of the pod, in the pod's network namespace.")

# Checked field by field as the API server checks them (generator.lab.netpol): the schema
# says only that each is a mapping, so each problem is reported once, with its path.
NETWORK_POLICY = {"type": "object", "description": "A Kubernetes NetworkPolicy "
                  "(networking.k8s.io/v1: metadata, spec), as kubectl takes it; "
                  "metadata.namespace defaults to `default`."}

NAMESPACE = {"$ref": "#/definitions/dnsLabel", "default": "default",
             "description": "The object's namespace (default `default`)."}

POD = _object({
    "name": {"$ref": "#/definitions/dnsLabel"},
    "namespace": NAMESPACE,
    "node": {"type": "string", "description": "The node the pod runs on."},
    "labels": LABELS,
    "containers": {"type": "array", "minItems": 1, "items": CONTAINER,
                   "description": "Default: one container running the pod test server."},
    "terminationGracePeriodSeconds": _int(0, 3600, "Seconds between SIGTERM and SIGKILL when "
                                                   "the pod is removed.", 30),
}, ["name", "node"], "A pod: a network namespace on its node, joined to cbr0.")

PORT = _object({
    "name": _name(DNS_LABEL, 15, "Required when the service has more than one port."),
    "port": _int(1, 65535, "The service port."),
    "targetPort": _int(1, 65535, "The pods' port (default: port)."),
    "protocol": _enum(["TCP", "UDP"], "TCP (default) or UDP."),
    "nodePort": _int(*NODE_PORT_RANGE, "NodePort and LoadBalancer services only; allocated "
                                       "when absent."),
}, ["port"], "A service port.")

SERVICE = _object({
    "name": {"$ref": "#/definitions/dnsLabel"},
    "namespace": NAMESPACE,
    "type": _enum(["ClusterIP", "NodePort", "LoadBalancer"],
                  "ClusterIP (default), NodePort, or LoadBalancer (a NodePort service with an "
                  "address from loadBalancerPool, announced on the node network)."),
    "selector": LABELS,
    "clusterIP": {"type": "string", "description": "An address of serviceCIDR, or None (a "
                                                   "headless service); allocated when absent."},
    "sessionAffinity": _enum(["None", "ClientIP"], "None (default) or ClientIP."),
    "sessionAffinityConfig": _object({"clientIP": _object({
        "timeoutSeconds": _int(1, 86400, "How long a client sticks to its endpoint.", 10800),
    }, [], "ClientIP affinity settings.")}, [], "As in a Kubernetes Service."),
    "externalTrafficPolicy": _enum(["Cluster", "Local"],
                                   "NodePort and LoadBalancer only: Local keeps the client's "
                                   "address and serves only from node-local endpoints."),
    "internalTrafficPolicy": _enum(["Cluster", "Local"],
                                   "Local: from inside the cluster, node-local endpoints only."),
    "trafficDistribution": _enum(["PreferClose", "PreferSameZone", "PreferSameNode"],
                                 "Prefer endpoints in the client node's zone (or on the node)."),
    "loadBalancerIP": {"type": "string", "description": "LoadBalancer only: an address of "
                                                        "loadBalancerPool (allocated when absent)."},
    "loadBalancerSourceRanges": {"type": "array", "items": {"type": "string"},
                                 "description": "LoadBalancer only: the client CIDRs allowed "
                                                "to reach loadBalancerIP (default: all)."},
    "externalIPs": {"type": "array", "items": {"type": "string"},
                    "description": "Addresses of nodeNetwork that nodes also serve the service "
                                   "on (routed to a node by the client)."},
    "ports": {"type": "array", "minItems": 1, "items": PORT},
}, ["name", "ports"], "A Service: a cluster IP (and nodePorts) in front of the selected pods.")

NAMESPACE_ITEM = _object({"name": {"$ref": "#/definitions/dnsLabel"}, "labels": LABELS}, ["name"],
                         "A namespace; it also carries kubernetes.io/metadata.name=<name>.")

DNS = _object({
    "enabled": {"type": "boolean", "default": True, "description": "Run the cluster DNS."},
    "clusterIP": {"type": "string", "description": "kube-dns's cluster IP (default: the 10th "
                                                   "address of serviceCIDR)."},
    "replicas": _int(1, 16, "DNS pods (coredns-<n> in kube-system), spread over the nodes.", 2),
}, [], "The cluster DNS (lab contract section 8).")

LAB_SCHEMA: dict[str, Any] = {
    "$schema": DRAFT_07,
    "$id": SCHEMA_ID,
    "title": "kgen lab file",
    "definitions": {
        "hostName": _name(HOST_NAME, NODE_NAME_MAX, "A node or client name (a container name)."),
        "dnsLabel": _name(DNS_LABEL, 63, "A DNS-1123 label, as Kubernetes names are."),
    },
    **_object({
        "name": _name(HOST_NAME, LAB_NAME_MAX, "The lab's name: names every container and "
                                               "network (kgen-<name>-<node>)."),
        "podCIDR": _cidr("The pods' range; each node gets one subnet of it.", "10.244.0.0/16"),
        "nodeCIDRMaskSize": _int(1, 30, "Prefix length of each node's pod subnet.", 24),
        "serviceCIDR": _cidr("The cluster IPs' range.", "10.96.0.0/16"),
        "nodeNetwork": _cidr("The underlay the node IPs come from (default: a free /24)."),
        "loadBalancerPool": _cidr("Where LoadBalancer IPs come from (default: the /28 at .224 "
                                  "of nodeNetwork)."),
        "backend": _enum(["vxlan", "host-gw"], "How pod subnets of other nodes are reached."),
        "proxyMode": _enum(["iptables", "nftables"], "kube-proxy's Linux mode."),
        "nodeGracePeriod": _int(1, 3600, "Seconds without a heartbeat before a node is "
                                         "NotReady and its endpoints leave every proxy.", 6),
        "vxlan": _object({"vni": _int(1, 16777215, "VXLAN network identifier.", 1),
                          "port": _int(1, 65535, "VXLAN UDP port.", 4789)},
                         [], "The overlay's VXLAN settings."),
        "clusterDomain": {"type": "string", "default": "cluster.local", "maxLength": 200,
                          "pattern": DOMAIN,
                          "description": "The cluster's DNS domain."},
        "dns": DNS,
        "namespaces": {"type": "array", "items": NAMESPACE_ITEM,
                       "description": "Namespaces with labels; default and kube-system always "
                                      "exist, and one named by a pod or service need not be "
                                      "listed."},
        "nodes": {**_member_list("nodes", {"zone": ZONE}), "minItems": 1},
        "pods": {"type": "array", "items": POD, "description": "The lab's pods."},
        "services": {"type": "array", "items": SERVICE, "description": "The lab's services."},
        "networkPolicies": {"type": "array", "items": NETWORK_POLICY,
                            "description": "NetworkPolicy objects, enforced on every node."},
        "clients": _member_list("clients (hosts outside the cluster, on the node network)"),
    }, ["name", "nodes"], "A Kubernetes networking lab: nodes, pods, services and clients "
                          "in Docker (see kgen's docs/reference.md, \"The lab file\")."),
}
