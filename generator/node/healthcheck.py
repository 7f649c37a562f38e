"""kube-proxy's service health check servers (pkg/proxy/healthcheck), one per
healthCheckNodePort of a LoadBalancer service with externalTrafficPolicy Local.

`GET` on any path answers 200 when this node has ready local endpoints of the
service and 503 when it has none, with kube-proxy's headers and JSON body (the
count is of endpoint IPs, as kube-proxy's LocalReadyEndpoints counts them). A
cloud load balancer (here: anyone on the node network) sends traffic only to
nodes that answer 200.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("kgen.healthcheck")


def body(namespace: str, name: str, count: int, healthy: bool = True) -> str:
    """kube-proxy's response body, byte for byte (tab-indented, no final newline)."""
    return (f'{{\n\t"service": {{\n\t\t"namespace": {json.dumps(namespace)},\n'
            f'\t\t"name": {json.dumps(name)}\n\t}},\n\t"localEndpoints": {count},\n'
            f'\t"serviceProxyHealthy": {"true" if healthy else "false"}\n}}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, namespace: str, name: str) -> None:
        super().__init__(("0.0.0.0", port), _Handler)
        self.namespace, self.name = namespace, name
        self.count = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        count = self.server.count
        text = body(self.server.namespace, self.server.name, count).encode()
        self.send_response(200 if count else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Load-Balancing-Endpoint-Weight", str(count))
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a load balancer probes every few seconds: no log line each time


class HealthServers:
    """The servers this node runs: `sync` opens, updates and closes them as kube-proxy's
    SyncServices and SyncEndpoints do."""

    def __init__(self) -> None:
        self.servers: dict[int, _Server] = {}

    def sync(self, wanted: dict[int, tuple[str, str, int]]) -> None:
        """`wanted`: healthCheckNodePort -> (namespace, service name, local endpoints)."""
        for port in [p for p, s in self.servers.items()
                     if p not in wanted or wanted[p][:2] != (s.namespace, s.name)]:
            gone = self.servers.pop(port)
            gone.shutdown()
            gone.server_close()
        for port, (namespace, name, count) in wanted.items():
            server = self.servers.get(port)
            if server is None:
                try:
                    server = _Server(port, namespace, name)
                except OSError as err:
                    log.error("health check port %d for %s/%s: %s", port, namespace, name, err)
                    continue
                threading.Thread(target=server.serve_forever, name=f"healthcheck-{port}",
                                 daemon=True).start()
                self.servers[port] = server
                log.info("health check for %s/%s on port %d", namespace, name, port)
            server.count = count

    def close(self) -> None:
        self.sync({})
