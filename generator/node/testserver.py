"""The pod test server, modelled on Kubernetes' agnhost netexec.

HTTP on 8080: /hostname (the pod's name), /clientip (the peer's IP:port as the
pod sees it), /echo?msg=X, /healthz. UDP on 8081: `hostname`, `clientip`,
`echo X`. Bodies are plain text without a trailing newline, as agnhost's.

SIGTERM does not stop it: like a draining server (agnhost netexec with
--delay-shutdown) it keeps answering until the pod's grace period ends and kubelet
(the node agent) kills it, so a terminating endpoint still serves.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import socketserver
import sys
import threading
from urllib.parse import parse_qs, urlsplit

# Not http.server: importing it (email, http.client, ...) took 35 ms, this whole module
# 18 ms (`python3 -S -X importtime`), at the start of every pod: 500 of them in a
# 100-node lab. What agnhost's netexec answers needs a request line, the headers' end,
# and one response.
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 501: "Not Implemented"}
MAX_LINE = 65536


def http_answer(name: str, path: str, peer: tuple[str, int]) -> tuple[int, str]:
    url = urlsplit(path)
    if url.path == "/hostname":
        return 200, name
    if url.path == "/clientip":
        return 200, f"{peer[0]}:{peer[1]}"
    if url.path == "/echo":
        return 200, parse_qs(url.query).get("msg", [""])[0]
    if url.path == "/healthz":
        return 200, "ok"
    return 404, "not found"


def udp_answer(name: str, data: bytes, peer: tuple[str, int]) -> str:
    text = data.decode(errors="replace").strip()
    if text == "hostname":
        return name
    if text == "clientip":
        return f"{peer[0]}:{peer[1]}"
    if text.startswith("echo "):
        return text[5:]
    return f"unknown command {text!r}"


def make_http_handler(name: str) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            # HTTP/1.1 keeps the connection for the next request, as http.server did.
            while self.handle_one():
                pass

        def handle_one(self) -> bool:
            """One request and its response; False when the connection is done."""
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return False
            request = line.decode("latin-1").rstrip("\r\n")
            keep = _read_headers(self.rfile) and request.endswith("HTTP/1.1")
            words = request.split()
            if len(words) != 3 or len(line) > MAX_LINE:
                code, body, keep = 400, "bad request", False
            elif words[0] != "GET":
                code, body = 501, "unsupported method"
            else:
                code, body = http_answer(name, words[1], self.client_address[:2])
            data = body.encode()
            head = [f"HTTP/1.1 {code} {REASONS[code]}", "Content-Type: text/plain",
                    f"Content-Length: {len(data)}"] + ([] if keep else ["Connection: close"])
            self.wfile.write("\r\n".join([*head, "", ""]).encode() + data)
            sys.stderr.write(f'{self.client_address[0]} "{request}" {code} -\n')
            return keep

    return Handler


def _read_headers(rfile: io.BufferedIOBase) -> bool:
    """Read up to the blank line (at most 100 headers); False when the client asked to
    close."""
    keep = True
    for _ in range(100):
        line = rfile.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            break
        header, _, value = line.decode("latin-1").partition(":")
        if header.strip().lower() == "connection" and value.strip().lower() == "close":
            keep = False
    return keep


IDLE_POLL = 3600.0


class UDPHandler(socketserver.BaseRequestHandler):
    name = ""

    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(udp_answer(self.name, data, self.client_address[:2]).encode(),
                    self.client_address)


class QuietUDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True


class HTTPServer(socketserver.ThreadingTCPServer):
    # socketserver listens with a backlog of 5: a burst of connections (a service's
    # clients, `kgen check`) overflowed it and the dropped SYNs came back 1 s, 3 s later.
    request_queue_size = 128
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self) -> None:
        # http.server's server_bind asks socket.getfqdn for its own name: a reverse lookup
        # through the pod's resolv.conf, whose kube-dns has no rules yet while the lab
        # comes up, so every pod stayed Pending for the resolver's 5 s timeout.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


def serve(name: str, http_port: int, udp_port: int, host: str = "0.0.0.0") -> None:
    http = HTTPServer((host, http_port), make_http_handler(name))
    handler = type("Handler", (UDPHandler,), {"name": name})
    udp = QuietUDPServer((host, udp_port), handler)
    stop = threading.Event()

    def draining(*_: object) -> None:
        print(f"test server {name}: SIGTERM, serving until killed", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, draining)
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for server in (http, udp):
        # Idle costs nothing: the loop sleeps in select() until a request comes (the
        # default 0.5 s poll would wake 250 servers of a 50-node lab 1,000 times a second).
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": IDLE_POLL},
                         daemon=True).start()
    print(f"test server {name}: http {http_port}, udp {udp_port}", file=sys.stderr, flush=True)
    stop.wait()
    # Exiting ends the serving threads (daemons); shutdown() would wait for their poll.
    for server in (http, udp):
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="kgen pod test server (agnhost netexec-like)")
    parser.add_argument("--name", default=os.environ.get("POD_NAME") or socket.gethostname())
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--udp-port", type=int, default=8081)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args()
    serve(args.name, args.http_port, args.udp_port, args.host)


if __name__ == "__main__":
    main()
