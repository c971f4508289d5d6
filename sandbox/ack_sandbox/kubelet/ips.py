"""Pod IPs on loopback: every pod gets its own 127.x.y.z (Linux routes all of 127.0.0.0/8 to ``lo``).

Each daemon takes its addresses from its own /16 block, ``127.B.0.1``-``127.B.255.254`` with B in 1..254
derived from the state directory (so a restarted daemon hands out the same block and pods keep their IPs,
and two sandboxes on one machine, e.g. parallel test runs, rarely share a block). 127.0.0.0/16 is left to
the host and the daemon's services. ``.0`` and ``.255`` host parts are skipped, and so is any address on
which some process already listens (read from ``/proc/net/tcp``), so a pod never collides with a stranger.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from pathlib import Path


def block_for(state_dir: Path) -> int:
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).digest()
    return 1 + digest[0] % 254


def listening_ips(proc_file: str = "/proc/net/tcp") -> set[str]:
    """IPv4 addresses with a socket in LISTEN state (state 0A)."""
    out: set[str] = set()
    try:
        lines = Path(proc_file).read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        if " 0A " not in line:  # most sockets are established or in TIME_WAIT: skip them cheaply
            continue
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A":
            hex_ip = parts[1].split(":")[0]
            out.add(str(ipaddress.IPv4Address(bytes.fromhex(hex_ip)[::-1])))
    return out


BUSY_TTL = 2.0  # seconds a read of the machine's listening addresses is reused


class IpPool:
    def __init__(self, block: int = 0) -> None:
        if block == 0:  # legacy/default range for tests: 127.0.1.1 upwards
            self.first = int(ipaddress.IPv4Address("127.0.1.1"))
            self.last = int(ipaddress.IPv4Address("127.0.255.254"))
        else:
            if not 1 <= block <= 254:
                raise ValueError(f"block must be 1..254, got {block}")
            self.first = int(ipaddress.IPv4Address(f"127.{block}.0.1"))
            self.last = int(ipaddress.IPv4Address(f"127.{block}.255.254"))
        self._used: dict[str, str] = {}  # ip -> owner (pod uid)
        self._next = self.first
        self._busy: tuple[float, set[str]] = (0.0, set())  # (when read, addresses others listen on)

    def _listening(self) -> set[str]:
        """``listening_ips()``, read at most every BUSY_TTL seconds: the kernel builds /proc/net/tcp from every
        socket (thousands under load), and a scale-out allocates ten addresses at once. Our own pods' addresses
        are in ``_used``; this only keeps clear of other programs' listeners."""
        read_at, busy = self._busy
        now = time.monotonic()
        if now - read_at > BUSY_TTL:
            busy = listening_ips()
            self._busy = (now, busy)
        return busy

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
        busy = self._listening()
        span = self.last - self.first + 1
        for _ in range(span):
            cand = self._next
            self._next = self.first if self._next >= self.last else self._next + 1
            if cand & 0xFF in (0, 255):
                continue
            ip = str(ipaddress.IPv4Address(cand))
            if ip not in self._used and ip not in busy:
                self._used[ip] = owner
                return ip
        raise RuntimeError(
            f"the pod IP pool {ipaddress.IPv4Address(self.first)}-{ipaddress.IPv4Address(self.last)} is exhausted"
        )

    def release(self, owner: str) -> None:
        for ip in [ip for ip, holder in self._used.items() if holder == owner]:
            del self._used[ip]

    def owner(self, ip: str) -> str | None:
        return self._used.get(ip)
