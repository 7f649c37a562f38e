"""`python3 -m generator.node.dns --zone FILE`: serve the cluster zone until SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from generator.node.dns.server import DnsServer, open_log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m generator.node.dns")
    parser.add_argument("--zone", required=True, help="the DnsZone document (JSON), followed as it changes")
    parser.add_argument("--listen", default="0.0.0.0", help="address for UDP and TCP (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--log", default="-", help="one line per query; '-' is stdout")
    args = parser.parse_args(argv)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    try:
        server = DnsServer(Path(args.zone), args.listen, args.port, open_log(args.log))
    except OSError as err:
        print(f"kgen dns: cannot listen on {args.listen}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    print(f"kgen dns: listening on {server.address[0]}:{server.address[1]} (udp, tcp)", flush=True)
    try:
        server.serve_forever(stop=lambda: bool(stopping))
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
