"""Pod IPs on loopback: every pod gets its own 127.x.y.z (Linux routes all of 127.0.0.0/8 to ``lo``).

Addresses come from 127.0.1.1 upwards (127.0.0.0/24 is left to the host and the daemon's services);
``.0`` and ``.255`` host parts are skipped so no address looks like a network or broadcast address.
"""

from __future__ import annotations

import ipaddress

FIRST = int(ipaddress.IPv4Address("127.0.1.1"))
LAST = int(ipaddress.IPv4Address("127.255.255.254"))


class IpPool:
    def __init__(self) -> None:
        self._used: dict[str, str] = {}       # ip -> owner (pod uid)
        self._next = FIRST

    def reserve(self, ip: str, owner: str) -> bool:
        """Take a known address (e.g. a pod's recorded podIP after a restart); False if another owner has it."""
        holder = self._used.get(ip)
        if holder is not None and holder != owner:
            return False
        self._used[ip] = owner
        return True

    def allocate(self, owner: str) -> str:
        for ip, holder in self._used.items():
            if holder == owner:
                return ip
        span = LAST - FIRST + 1
        for _ in range(span):
            cand = self._next
            self._next = FIRST if self._next >= LAST else self._next + 1
            last_octet = cand & 0xFF
            if last_octet in (0, 255):
                continue
            ip = str(ipaddress.IPv4Address(cand))
            if ip not in self._used:
                self._used[ip] = owner
                return ip
        raise RuntimeError("the pod IP pool 127.0.1.1-127.255.255.254 is exhausted")

    def release(self, owner: str) -> None:
        for ip in [ip for ip, holder in self._used.items() if holder == owner]:
            del self._used[ip]

    def owner(self, ip: str) -> str | None:
        return self._used.get(ip)
