"""Which addresses a TCP port listens on (the local stack must listen on loopback only)."""
from __future__ import annotations

import ipaddress
from typing import List, Optional

import psutil


def listening_ips(port: int, pid: Optional[int] = None) -> List[str]:
    """Addresses listening on TCP ``port`` (of process ``pid``, or of any process), IPv4-mapped IPv6
    ones written as IPv4 (gRPC listens on such sockets)."""
    conns = psutil.Process(pid).net_connections(kind="inet") if pid else psutil.net_connections(kind="inet")
    out = set()
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port:
            ip = ipaddress.ip_address(c.laddr.ip)
            out.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return sorted(out)
