"""kube-proxy's nfacct counters (pkg/proxy/metrics: nfacct.Ensure at start-up): named
packet counters in the kernel's nfnetlink_acct, which iptables rules bump with
`-m nfacct --nfacct-name NAME`. Created over netlink (standard library only); a
kernel without nfacct answers with an error and the rules go without the match,
as kube-proxy's do.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ACCT = 7
NFNL_MSG_ACCT_NEW = 0
NFACCT_NAME = 1
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2


def _new_counter_message(name: str, seq: int) -> bytes:
    value = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(value), NFACCT_NAME) + value
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr  # nfgenmsg, then the name
    kind = (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_NEW
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
                       seq, 0) + body


def ensure_counter(name: str) -> bool:
    """Create the counter unless it exists; False when the kernel has no nfacct."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
            sock.settimeout(2.0)
            sock.bind((0, 0))
            sock.send(_new_counter_message(name, os.getpid() & 0xFFFF))
            reply = sock.recv(4096)
    except OSError:
        return False
    if len(reply) < 20 or struct.unpack_from("=H", reply, 4)[0] != NLMSG_ERROR:
        return False
    code = -struct.unpack_from("=i", reply, 16)[0]
    # EBUSY: a counter of that name exists already (a NEW without NLM_F_REPLACE).
    return code in (0, errno.EBUSY, errno.EEXIST)
