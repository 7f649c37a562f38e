"""A pod's side of the NetworkPolicy netns tests (run inside a pod's namespace, stdlib only).

`serve NAME`: answers on TCP and UDP ports 80 and 81 with NAME (the e2e suite's
servers: serve-80-tcp, serve-80-udp, serve-81-tcp, serve-81-udp).
`talk IP PORT`: one TCP connection, asked again for every line of stdin (each
answer printed), to show that a connection outlives a rule sync.
`probe`: reads [[ip, port, protocol], ...] as JSON on stdin, tries each once, in
parallel, and prints the list of answers (the server's name, or null).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

PORTS = (80, 81)
TIMEOUT = 2.0  # a dropped packet is a timeout; an allowed one answers on a local bridge in ms


def serve(name: str) -> None:
    for port in PORTS:
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("0.0.0.0", port))
        tcp.listen(64)
        threading.Thread(target=_accept, args=(tcp, name), daemon=True).start()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", port))
        threading.Thread(target=_datagrams, args=(udp, name), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def _accept(server: socket.socket, name: str) -> None:
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_answer, args=(conn, name), daemon=True).start()


def _answer(conn: socket.socket, name: str) -> None:
    with conn:  # one answer per line, so one connection can ask again later
        for _ in conn.makefile("rb"):
            conn.sendall(name.encode() + b"\n")


def _datagrams(server: socket.socket, name: str) -> None:
    while True:
        _, peer = server.recvfrom(512)
        server.sendto(name.encode(), peer)


def probe_one(ip: str, port: int, protocol: str) -> str | None:
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.connect((ip, port))
            sock.send(b"hostname\n")
            return sock.recv(512).decode().strip() or None
        except OSError:
            return None


def talk(ip: str, port: int) -> None:
    with socket.create_connection((ip, port), TIMEOUT) as sock:
        answers = sock.makefile("rb")
        for _ in sys.stdin:
            sock.sendall(b"hostname\n")
            print(answers.readline().decode().strip(), flush=True)


def main() -> None:
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    if sys.argv[1] == "talk":
        talk(sys.argv[2], int(sys.argv[3]))
        return
    targets = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        print(json.dumps(list(pool.map(lambda t: probe_one(*t), targets))))


if __name__ == "__main__":
    main()
