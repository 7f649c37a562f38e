"""What commands accept for a pod (`POD` or `NAMESPACE/POD`) and a service (`SERVICE` as
a pod of some namespace names it, `SERVICE.NAMESPACE`, and the longer forms of its DNS name).

Imports nothing at run time: `kgen exec` resolves its target on its fast path, which
loads no more than it must (see generator/runtime/execute.py). A namespace missing from
a pod or service is `default`, as `generator.node.contract.namespace_of` says.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, TypeVar

    Named = TypeVar("Named", bound=Mapping[str, Any])


def _namespace(obj: Mapping[str, Any]) -> str:
    return str(obj.get("namespace") or "default")


def find_pod(pods: Sequence[Named], target: str) -> Named | None:
    """The pod `POD` or `NAMESPACE/POD` names (pod names are unique in a lab)."""
    namespace, _, name = target.rpartition("/")
    for pod in pods:
        if pod["name"] == name and (not namespace or _namespace(pod) == namespace):
            return pod
    return None


def find_service(services: Sequence[Named], target: str, domain: str = "cluster.local",
                 from_namespace: str = "default") -> Named | None:
    """The service a name means, as a pod of `from_namespace` resolves it: `SERVICE` (in
    that namespace), `SERVICE.NAMESPACE`, `SERVICE.NAMESPACE.svc`, or the FQDN
    `SERVICE.NAMESPACE.svc.<domain>`."""
    name = target.rstrip(".")
    for suffix in (f".svc.{domain}", ".svc"):
        name = name.removesuffix(suffix)
    service, _, namespace = name.partition(".")
    if "." in namespace:
        return None
    return next((s for s in services if s["name"] == service
                 and _namespace(s) == (namespace or from_namespace)), None)


def qualified(obj: Mapping[str, Any]) -> str:
    """`NAMESPACE/NAME` of a pod or service, as kubectl and kube-proxy name it."""
    return f"{_namespace(obj)}/{obj['name']}"
