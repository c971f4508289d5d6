"""What every sandbox service shares: the state directory, the clock, the demo account, the cluster id."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Account:
    """The sandbox's own demo AccessKey pair (stands in for a RAM user's key)."""

    access_key_id: str
    access_key_secret: str


class Clock:
    """Cloud delays compressed by ``--time-scale``: ``await clock.sleep(60)`` waits 60/time_scale seconds.

    ``now()`` is sandbox time: it runs ``time_scale`` times faster than the wall clock, so timestamps and
    durations the sandbox reports (node age, HPA windows) look like the real cloud's.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def real_seconds(self, cloud_seconds: float) -> float:
        return cloud_seconds / self.time_scale

    async def sleep(self, cloud_seconds: float) -> None:
        await asyncio.sleep(self.real_seconds(cloud_seconds))

    def now(self) -> float:
        return self.at_monotonic(time.monotonic())

    def at_monotonic(self, monotonic: float) -> float:
        """Sandbox time of an instant read from ``time.monotonic()`` in any process on this machine (the clock
        is system-wide: CLOCK_MONOTONIC on Linux), so another process can timestamp events without a skew."""
        return self._wall0 + (monotonic - self._mono0) * self.time_scale


@dataclass
class SandboxContext:
    state_dir: Path
    time_scale: float = 1.0
    region: str = "cn-beijing"
    cluster_id: str = ""
    account: Account = field(default_factory=lambda: Account("", ""))
    clock: Clock = field(default_factory=Clock)
    host: str = "127.0.0.1"
    # Filled as services start: service name -> base URL.
    endpoints: dict[str, str] = field(default_factory=dict)
    # Service state objects other services may read (e.g. the node-pool autoscaler reads CS state).
    services: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load_or_create(cls, state_dir: Path, time_scale: float = 1.0) -> SandboxContext:
        """Identity (account, cluster id, region) is created once per state directory and kept."""
        state_dir.mkdir(parents=True, exist_ok=True)
        ident_file = state_dir / "identity.json"
        if ident_file.exists():
            ident = json.loads(ident_file.read_text())
        else:
            ident = {
                "region": "cn-beijing",
                "cluster_id": "c" + secrets.token_hex(16),
                "access_key_id": "LTAI5t" + secrets.token_hex(9),
                "access_key_secret": secrets.token_urlsafe(22),
            }
            ident_file.write_text(json.dumps(ident, indent=2))
            ident_file.chmod(0o600)
        return cls(
            state_dir=state_dir,
            time_scale=time_scale,
            region=ident["region"],
            cluster_id=ident["cluster_id"],
            account=Account(ident["access_key_id"], ident["access_key_secret"]),
            clock=Clock(time_scale),
        )

    def service_dir(self, name: str) -> Path:
        path = self.state_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path
