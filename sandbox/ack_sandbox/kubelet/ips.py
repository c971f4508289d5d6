"""Pod IPs on loopback: every pod gets its own 127.x.y.z (Linux routes all of 127.0.0.0/8 to ``lo``).

Each daemon takes its addresses from its own /16 block, ``127.B.0.1``-``127.B.255.254`` with B in 1..254.
The block is *claimed* (:func:`claim_block`): an exclusive ``flock`` on ``<lock dir>/<B>.lock`` held for the
daemon's life, so two live sandboxes on one machine (parallel test workers, a demo beside the suite) never
share one. Both would hand out the same addresses in the same order, and one's pod would answer (or, torn
down, refuse) the other's traffic. The first choice is the block recorded in the state directory (a restarted
daemon takes its block back, so pods keep their IPs), else one derived from the state directory's path; a
block held by another daemon is passed over for the next free one. 127.0.0.0/16 is left to the host and the
daemon's services. ``.0`` and ``.255`` host parts are skipped, and so is any address on
which some process already listens (read from ``/proc/net/tcp``), so a pod never collides with a stranger.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def block_for(state_dir: Path) -> int:
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).digest()
    return 1 + digest[0] % 254


BLOCK_FILE = "ip-block"  # in the state directory: the block this sandbox last claimed


def lock_dir() -> Path:
    """Where daemons on this machine claim their blocks: ``ACK_SANDBOX_IP_LOCK_DIR``, else a shared temp dir."""
    configured = os.environ.get("ACK_SANDBOX_IP_LOCK_DIR")
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / "ack-sandbox-ip-blocks"
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        try:
            path.chmod(0o1777)  # every user's sandboxes claim here, as in /tmp; a sticky dir keeps files apart
        except OSError:
            pass
    return path


@dataclass
class BlockClaim:
    """A claimed block; the lock lasts until :meth:`release` or the process's end (the kernel drops it)."""

    block: int
    handle: IO[bytes] | None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def claim_block(state_dir: Path) -> BlockClaim:
    """The first free block, starting from the recorded one (or the path-derived one), claimed for this process."""
    recorded = state_dir / BLOCK_FILE
    try:
        first = int(recorded.read_text().strip())
        if not 1 <= first <= 254:
            raise ValueError(first)
    except (OSError, ValueError):
        first = block_for(state_dir)
    locks = lock_dir()
    for i in range(254):
        block = 1 + (first - 1 + i) % 254
        handle = open(locks / f"{block}.lock", "ab")  # noqa: SIM115 - held open for the daemon's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        recorded.write_text(f"{block}\n")
        return BlockClaim(block, handle)
    raise RuntimeError(f"every pod IP block 127.1-254.x.y is claimed by a live sandbox (locks in {locks})")


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
