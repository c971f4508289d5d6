"""The container engine for the check: rootful podman, its Docker-API socket, and a health-check scheduler.

podman (Debian bookworm: 4.3) runs here with runc and cgroupfs (no systemd, cgroup v1), file events, and
ulimits no higher than this process may set (it has no CAP_SYS_RESOURCE). Without systemd podman schedules no
health checks (it creates a systemd timer per container: "unable to get systemd connection to add
healthchecks"), so compose's `condition: service_healthy` would wait forever: ``HealthScheduler`` runs
``podman healthcheck run`` for each container at the interval its compose health check declares, which makes
podman execute the declared test and record the result (retries, start period) itself.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

APT_PACKAGES = ("podman", "runc", "debootstrap", "netavark", "aardvark-dns", "iptables")
# The most processes per uid podman's runc could set here (higher values fail with EPERM).
NPROC_CAP = 32768


def log(message: str) -> None:
    print(f"[compose-check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_packages() -> None:
    """Install podman, runc and debootstrap from Debian's packages when missing (the check runs as root)."""
    missing = [p for p in ("podman", "runc", "debootstrap") if shutil.which(p) is None]
    if not missing:
        return
    log(f"installing {' '.join(APT_PACKAGES)} (apt-get)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def containers_conf(path: Path) -> Path:
    """containers.conf for this machine: runc on cgroupfs, file events, ulimits within our hard limits."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    nproc = NPROC_CAP if nproc == resource.RLIM_INFINITY else min(nproc, NPROC_CAP)
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    return path


class Podman:
    """podman with the check's containers.conf."""

    def __init__(self, conf: Path) -> None:
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(self, *args: str, capture: bool = False, check: bool = True, **kw: object) -> str:
        proc = subprocess.run(
            ["podman", *args],
            env=self.env,
            check=check,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            **kw,  # type: ignore[call-overload]
        )
        return proc.stdout or ""

    def label(self, image: str, key: str) -> str | None:
        out = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{json .Labels}}", image],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            return None
        labels = json.loads(out.stdout.strip() or "null") or {}
        return labels.get(key)

    def image_id(self, image: str) -> str:
        return self.run("image", "inspect", "--format", "{{.Id}}", image, capture=True).strip()

    def build(self, context: Path, tag: str, inputs: str, *build_args: str) -> None:
        from standins import LABEL

        args = [
            "build",
            "--format",
            "docker",
            "--network",
            "host",
            "--pull=never",
            "--layers",
            "-t",
            tag,
            "--label",
            f"{LABEL}={inputs}",
        ]
        for arg in build_args:
            args += ["--build-arg", arg]
        self.run(*args, "-f", str(context / "Containerfile"), str(context))

    def containers(self, project: str) -> list[dict]:
        out = self.run(
            "ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "--format", "json", capture=True
        )
        return json.loads(out or "[]")

    def inspect(self, name: str) -> dict:
        out = self.run("container", "inspect", name, capture=True, check=False)
        data = json.loads(out or "[]")
        return data[0] if data else {}


class Service:
    """`podman system service` on a private socket, for Docker Compose (DOCKER_HOST)."""

    def __init__(self, podman: Podman, rundir: Path) -> None:
        self.podman = podman
        self.socket = rundir / "podman.sock"
        self.logfile = rundir / "podman-service.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        with self.logfile.open("wb") as out:
            self.proc = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.docker_host],
                env=self.podman.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"podman system service did not start: see {self.logfile}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.socket.unlink(missing_ok=True)


class HealthScheduler(threading.Thread):
    """Runs each project container's declared health check at its declared interval (see module docstring)."""

    def __init__(self, podman: Podman, project: str) -> None:
        super().__init__(daemon=True, name="health-scheduler")
        self.podman = podman
        self.project = project
        self.stopping = threading.Event()
        self.next_run: dict[str, float] = {}

    def run(self) -> None:
        # One `podman healthcheck run` per container at a time, concurrently across containers: a slow check
        # (an `airflow jobs check` on a loaded machine) must not delay the others' schedules.
        running: dict[str, subprocess.Popen[bytes]] = {}
        while not self.stopping.wait(1.0):
            now = time.monotonic()
            for c in self.podman.containers(self.project):
                cid = c["Id"]
                if c.get("State") != "running":
                    self.next_run.pop(cid, None)
                    continue
                if cid not in self.next_run:
                    self.next_run[cid] = now + self._interval(cid)
                elif now >= self.next_run[cid] and (cid not in running or running[cid].poll() is not None):
                    self.next_run[cid] = now + self._interval(cid)
                    running[cid] = subprocess.Popen(
                        ["podman", "healthcheck", "run", cid],
                        env=self.podman.env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
        for proc in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _interval(self, cid: str) -> float:
        hc = (self.podman.inspect(cid).get("Config") or {}).get("Healthcheck") or {}
        if not hc.get("Test"):
            return float("inf")
        interval = hc.get("Interval") or 30_000_000_000
        return interval / 1e9 if isinstance(interval, int) else 30.0

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=90)
