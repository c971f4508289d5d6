"""One container = one local process group (asyncio subprocess), with graceful termination.

The process runs in its own session (``start_new_session``) so SIGTERM/SIGKILL reach its children too.
It is spawned without a pre-exec hook, so Python uses vfork and the daemon's memory is not copied for each
container; the container's launcher (``runtimes.launcher``) asks the kernel to SIGKILL it if the daemon dies
(``PR_SET_PDEATHSIG``), so no pod process outlives the sandbox. Its pid/pgid is recorded in a pid file so a
restarted daemon can reap leftovers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from ack_sandbox.runtimes.common import SERVING_NICE_ENV
from ack_sandbox.runtimes.launcher import STARTUP_NICE_ENV

# A container starts at the kubelet's CPU priority and takes the data plane's once it serves
# (runtimes.common.serving_priority): on ACK a new replica starts on a node of its own; here all pods share the
# machine's cores, so a replica importing, loading and warming up its model runs behind the replicas serving.
# The kubelet's priority is the control plane's (server.py steps the daemon back 5 levels); a container that a
# readiness or startup probe keeps out of the endpoints until it is ready starts lower still (nice 10). One that no
# probe gates (the seed's TF Serving has none) takes traffic at once, so starting it low would only make its
# requests fail for longer. Only with the privilege to give it back (root / CAP_SYS_NICE).
STARTUP_NICE = int(os.environ.get(STARTUP_NICE_ENV, "10"))


def startup_priority_env(gated: bool = True) -> dict[str, str]:
    """What to add to a container's env for its start-up and serving priorities (applied by the container's
    launcher, ``runtimes.launcher``, and ``runtimes.common.serving_priority``); empty when there is nothing to
    change or no privilege to give a priority back. ``gated``: a probe keeps the container from traffic until
    it is ready, so it may start at STARTUP_NICE."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    serving = int(os.environ.get(SERVING_NICE_ENV, own))  # the daemon's priority before it stepped back (server.py)
    startup = STARTUP_NICE if gated else 0
    if os.geteuid() != 0 or max(startup, own) <= serving:
        return {}
    env = {SERVING_NICE_ENV: str(serving)}
    if own < startup:
        env[STARTUP_NICE_ENV] = str(startup)
    return env


class ContainerProcess:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at: float = 0.0
        self.finished_at: float = 0.0
        self.exit_code: int | None = None
        self.signalled: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab", buffering=0) as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(self.cwd),
                env=self.env,
                start_new_session=True,
            )
        self.started_at = time.time()

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self.exit_code is None:
            self.finished_at = time.time()
            # A process killed by signal N reports 128+N, as container runtimes do.
            self.exit_code = 128 - code if code < 0 else code
        return self.exit_code

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _killpg(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    async def terminate(self, grace_real_seconds: float) -> int | None:
        """SIGTERM, wait up to the grace period, then SIGKILL (the kubelet's killContainer)."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.signalled = True
            self._killpg(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), max(grace_real_seconds, 0.0))
            except TimeoutError:
                self._killpg(signal.SIGKILL)
        else:
            self._killpg(signal.SIGKILL)  # leftovers of the group
        return await self.wait()

    def kill_now(self) -> None:
        self._killpg(signal.SIGKILL)


class PidFile:
    """``pid -> pod key`` of every live container process, so a restarted kubelet can kill orphans."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pids: dict[int, str] = {}

    def add(self, pid: int, owner: str) -> None:
        self._pids[pid] = owner
        self._save()

    def remove(self, pid: int) -> None:
        if self._pids.pop(pid, None) is not None:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(k): v for k, v in self._pids.items()}))
        tmp.replace(self.path)

    def reap_leftovers(self) -> int:
        """Kill the process groups a previous daemon left behind (e.g. after SIGKILL)."""
        if not self.path.exists():
            return 0
        try:
            old = json.loads(self.path.read_text())
        except ValueError:
            old = {}
        killed = 0
        for pid in old:
            try:
                os.killpg(int(pid), signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError, ValueError):
                pass
        self.path.unlink(missing_ok=True)
        return killed
