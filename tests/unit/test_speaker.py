"""The layer 2 speaker's choice and frames, and the health check servers, without a lab:
MetalLB's owner election (contract.lb_announcers), ARP replies and gratuitous ARP built
byte by byte, and kube-proxy's health check answered over a real loopback socket."""

from __future__ import annotations

import hashlib
import socket
import struct
import urllib.error
import urllib.request
from typing import Any

from generator.node.healthcheck import HealthServers, body
from generator.node.lb_election import lb_announcer, lb_announcers, local_ready_endpoints
from generator.node.speaker import BROADCAST, answer, arp_frame, gratuitous

MAC = bytes.fromhex("0242ac1cb403")
PEER = bytes.fromhex("0242ac1cb4fe")


def packed(ip: str) -> bytes:
    return socket.inet_aton(ip)


def cluster(policy: str = "Cluster") -> Any:
    return {"services": [{"name": "web", "type": "LoadBalancer", "selector": {"app": "web"},
                          "loadBalancerIP": "172.28.180.229", "externalTrafficPolicy": policy,
                          "ports": []}]}


def pod(name: str, node: str, state: str = "Running") -> Any:
    return {"name": name, "node": node, "ip": f"10.244.{node[-1]}.2", "state": state,
            "labels": {"app": "web"}}


def test_owner_is_the_first_node_by_sha256_of_node_hash_ip() -> None:
    nodes = {"node-0", "node-1", "node-2"}
    ranked = sorted(nodes, key=lambda n: hashlib.sha256(f"{n}#172.28.180.229".encode()).digest())
    assert lb_announcer("172.28.180.229", nodes) == ranked[0]
    # Its failure hands the IP to the next one in the same order.
    assert lb_announcer("172.28.180.229", nodes - {ranked[0]}) == ranked[1]
    assert lb_announcer("172.28.180.229", set()) is None


def test_local_policy_announces_only_from_nodes_with_a_ready_endpoint() -> None:
    pods = [pod("a", "node-1"), pod("b", "node-2", state="Pending")]
    live = {"node-0", "node-1", "node-2"}
    assert lb_announcers(cluster("Local"), pods, live) == {"172.28.180.229": "node-1"}
    assert lb_announcers(cluster("Local"), pods, live - {"node-1"}) == {"172.28.180.229": None}


def test_a_service_without_ready_endpoints_is_not_announced() -> None:
    live = {"node-0", "node-1"}
    assert lb_announcers(cluster(), [pod("b", "node-1", "Pending")], live) == \
        {"172.28.180.229": None}
    owner = lb_announcers(cluster(), [pod("a", "node-1")], live)["172.28.180.229"]
    assert owner == lb_announcer("172.28.180.229", live)


def test_local_ready_endpoints_count_ips_on_the_node() -> None:
    svc = cluster()["services"][0]
    pods = [pod("a", "node-1"), pod("b", "node-2"), pod("c", "node-1", "Terminating")]
    assert local_ready_endpoints(svc, pods, "node-1") == 1
    assert local_ready_endpoints(svc, pods, "node-0") == 0


def request_for(ip: str, sender_mac: bytes = PEER, sender_ip: str = "172.28.180.254") -> bytes:
    return arp_frame(1, sender_mac, packed(sender_ip), BROADCAST, b"\0" * 6, packed(ip))


def test_an_arp_request_for_an_owned_ip_is_answered_with_this_mac() -> None:
    reply = answer(request_for("172.28.180.229"), MAC, frozenset({packed("172.28.180.229")}))
    assert reply is not None
    assert reply[:6] == PEER and reply[6:12] == MAC and reply[12:14] == b"\x08\x06"
    op, sha, spa, tha, tpa = struct.unpack("!6xH6s4s6s4s", reply[14:42])
    assert (op, sha, spa, tha, tpa) == (2, MAC, packed("172.28.180.229"), PEER,
                                        packed("172.28.180.254"))


def test_other_ips_replies_and_own_frames_are_ignored() -> None:
    owned = frozenset({packed("172.28.180.229")})
    assert answer(request_for("172.28.180.230"), MAC, owned) is None
    assert answer(request_for("172.28.180.229", sender_mac=MAC), MAC, owned) is None
    garp_reply = gratuitous(PEER, "172.28.180.229")[1]
    assert answer(garp_reply, MAC, owned) is None
    assert answer(b"\x00" * 20, MAC, owned) is None


def test_gratuitous_arp_is_a_request_and_a_reply_for_the_ip_itself() -> None:
    frames = gratuitous(MAC, "172.28.180.229")
    for frame, op in zip(frames, (1, 2), strict=True):
        assert frame[:6] == BROADCAST and frame[6:12] == MAC
        got = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
        assert got == (1, 0x0800, 6, 4, op, MAC, packed("172.28.180.229"), BROADCAST,
                       packed("172.28.180.229"))


def test_body_is_kube_proxys() -> None:
    assert body("default", "web", 2) == (
        '{\n\t"service": {\n\t\t"namespace": "default",\n\t\t"name": "web"\n\t},\n'
        '\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            return r.status, r.read().decode(), r.headers["X-Load-Balancing-Endpoint-Weight"]
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), err.headers["X-Load-Balancing-Endpoint-Weight"]


def test_health_server_answers_503_then_200_as_endpoints_come() -> None:
    servers, port = HealthServers(), free_port()
    try:
        servers.sync({port: ("default", "web", 0)})
        assert get(port) == (503, body("default", "web", 0), "0")
        servers.sync({port: ("default", "web", 3)})
        assert get(port) == (200, body("default", "web", 3), "3")
    finally:
        servers.close()
    assert servers.servers == {}
    with socket.socket() as s:  # nobody listens there any more (TIME_WAIT aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
