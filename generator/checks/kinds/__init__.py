"""One module per check kind (as testinfra has one per resource): how the plan gets
checks of that kind, and how one is judged, side by side."""

from __future__ import annotations

from generator.checks.base import Check
from generator.checks.kinds.affinity import Affinity
from generator.checks.kinds.clusterip import ClusterIP
from generator.checks.kinds.clusterip_udp import ClusterIPUDP
from generator.checks.kinds.conntrack import Conntrack
from generator.checks.kinds.dns import Dns
from generator.checks.kinds.external_ip import ExternalIP
from generator.checks.kinds.hairpin import Hairpin
from generator.checks.kinds.lb_health import LbHealth
from generator.checks.kinds.loadbalancer import LoadBalancer
from generator.checks.kinds.localhost_nodeport import LocalhostNodePort
from generator.checks.kinds.mtu import Mtu
from generator.checks.kinds.netpol import NetPol
from generator.checks.kinds.netpol_nodeport import NetPolNodePort
from generator.checks.kinds.no_endpoints import NoEndpoints
from generator.checks.kinds.nodeport import NodePort
from generator.checks.kinds.pod_to_pod import PodToPod
from generator.checks.kinds.wire import Wire

# Every kind; each has a test function of its test_name() in generator/checks/test_datapath.py.
KINDS: list[type[Check]] = [PodToPod, Wire, Mtu, NetPol, NetPolNodePort, ClusterIP, Conntrack,
                            ClusterIPUDP, Affinity, Hairpin, NoEndpoints, NodePort,
                            LocalhostNodePort, LoadBalancer, LbHealth, ExternalIP, Dns]
