"""The MTU: a full-size packet crosses between two nodes' pods, with Don't Fragment set.

The source pod's eth0 has the lab's pod MTU (read with testinfra's interface
module), and a ping of exactly that size, DF set, gets across: an overlay that
ate into it would need fragments and fail.
"""

from __future__ import annotations

from generator.checks.base import CommandCheck, LabView, Outcome, Planning
from generator.checks.kinds.wire import first_pods

ICMP_OVERHEAD = 28  # IPv4 20 + ICMP 8


class Mtu(CommandCheck):
    kind = "mtu"

    def run(self, lab: LabView) -> Outcome:
        pod = lab.host(self.source)
        size, mtu = self.params["payload"], self.params["mtu"]
        links = pod.interface("eth0").link  # `ip --json link show eth0`
        if not links or links[0].get("mtu") != mtu:
            return Outcome(False, f"eth0 MTU {links[0].get('mtu') if links else 'missing'}, "
                                  f"not {mtu}")
        result = pod.run("ping -M do -c 1 -W 5 -s %s %s", str(size), lab.pod_ip[self.target])
        crossed = result.rc == 0
        return Outcome(crossed, f"eth0 MTU {mtu}; {size}-byte DF ping: "
                       + ("crossed" if crossed else "did not cross"))


def plan(ctx: Planning) -> list[Mtu]:
    pair = first_pods(ctx)
    if pair is None:
        return []
    a, b = pair
    mtu = ctx.cluster["mtu"]
    payload = mtu - ICMP_OVERHEAD
    return [Mtu(f"{a['name']} to {b['name']}", "a full-size packet across nodes", a["name"],
                b["name"], f"a {payload}-byte DF ping crosses (pod MTU {mtu})",
                frozenset(ctx.path(a, b)), {"payload": payload, "mtu": mtu})]
