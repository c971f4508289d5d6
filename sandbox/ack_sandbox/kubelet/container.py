"""One container of a pod, as the kubelet runs it (``ContainerRunner``): what to exec for its image
(``resolve_runtime``: the runtimes registry, then the kubelet's built-in busybox/python), ``$(VAR)`` expansion
and volume-path rewriting of command/args/env, start, probes, restarts with the kubelet's back-off, stop.

Driven by the pod's ``kubelet.pod.PodWorker``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ack_sandbox.kubelet import logs
from ack_sandbox.kubelet.probes import FailureStreak, ProbeSpec, resolve_port, run_probe
from ack_sandbox.kubelet.process import ContainerProcess, startup_priority_env
from ack_sandbox.kubelet.status import ContainerRecord

if TYPE_CHECKING:
    from ack_sandbox.kubelet.pod import PodWorker

BACKOFF_INITIAL = 10.0  # cloud seconds (kubelet: initial container/image back-off 10 s)
BACKOFF_MAX = 300.0  # cloud seconds (MaxContainerBackOff 5 min)
BACKOFF_RESET = 600.0  # a container that ran this long resets its back-off (2 x MaxContainerBackOff)
MIN_GRACE_AFTER_HOOK = 2.0  # cloud seconds: minimumGracePeriodInSeconds between SIGTERM and SIGKILL


class RunSpec:
    """What to exec for a container: argv plus extra env (from the runtimes registry or the built-ins)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env or {}


_SHELL_APPLETS = {
    "sh",
    "sleep",
    "echo",
    "cat",
    "true",
    "false",
    "ls",
    "env",
    "printf",
    "date",
    "wc",
    "head",
    "tail",
    "grep",
    "test",
    "[",
}


def _builtin_resolve(image: str, command: list[str] | None, args: list[str] | None) -> RunSpec | None:
    """Images the kubelet can run itself when the runtimes registry does not know them.

    ``busybox`` runs its applets (sh, sleep, echo, cat ...) with the host's binaries; ``python:3.x`` runs
    the interpreter of the daemon. Both need an explicit command or args, as their real entrypoints
    (a shell / the REPL) would otherwise exit at once, exactly as they do in a real container.
    """
    ref = image.split("@")[0]
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    repo = repo.removeprefix("docker.io/").removeprefix("library/")
    argv = list(command or []) + list(args or [])
    if repo == "busybox":
        if not argv:
            argv = ["sh"]
        applet = os.path.basename(argv[0])
        if applet not in _SHELL_APPLETS:
            return None
        exe = "/bin/sh" if applet == "sh" else shutil.which(applet)
        return RunSpec([exe or applet, *argv[1:]]) if exe else None
    if repo == "python":
        if not argv:
            argv = ["python3"]
        if os.path.basename(argv[0]).startswith("python"):
            return RunSpec([sys.executable, *argv[1:]])
        return None
    return None


class StartError(Exception):
    """The image runs, but not this command (the runtime's ``StartError``, exit code 128)."""


def resolve_runtime(
    image: str, command: list[str] | None, args: list[str] | None, env: dict[str, str]
) -> RunSpec | None:
    """The process for a container: the runtimes registry first, then the kubelet's built-ins.

    None: the image cannot be pulled (ImagePullBackOff). ``StartError``: the image is known but cannot
    run the given command (registry ``UnsupportedCommand``)."""
    try:
        from ack_sandbox.runtimes.registry import UnsupportedCommand, resolve  # owned by the runtimes engineer
    except ImportError:
        resolve = None
    if resolve is not None:
        try:
            spec = resolve(image, command, args, env)
        except UnsupportedCommand as exc:
            raise StartError(str(exc)) from exc
        if spec is not None:
            argv = getattr(spec, "argv", None) or getattr(spec, "command", None)
            extra = getattr(spec, "env", None) or {}
            if argv:
                return RunSpec([str(a) for a in argv], {str(k): str(v) for k, v in dict(extra).items()})
    return _builtin_resolve(image, command, args)


def translate_paths(value: str, mounts: dict[str, str]) -> str:
    """Rewrite container paths under a volume's mountPath to the local directory backing it."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        local = mounts[mount_path]
        pattern = r"(?<![\w/.-])" + re.escape(mount_path.rstrip("/")) + r"(?=/|$|[\s\"',;:])"
        value = re.sub(pattern, lambda _m, local=local: local, value)
    return value


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_vars(value: str, env: dict[str, str]) -> str:
    """``$(VAR)`` references in command/args/env values (k8s.io/kubernetes third_party/forked/golang/expansion):
    defined variables are substituted, undefined ones stay as written, ``$$`` escapes a ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, value)


def _backoff(n: int) -> float:
    """Delay before restart n (1-based): the first restart is immediate, then 10 s doubling to 300 s."""
    if n <= 1:
        return 0.0
    return min(BACKOFF_INITIAL * 2 ** (n - 2), BACKOFF_MAX)


_SLEEP = re.compile(r"^(?:/bin/|/usr/bin/)?sleep\s+(\d+(?:\.\d+)?)s?$")
_FETCH = re.compile(r"^(?:/usr/bin/|/bin/)?(?:curl|wget)\b(.*)$")


def hook_steps(command: list[str]) -> list[tuple[str, str]]:
    """An exec hook as steps the sandbox can perform: ("sleep", seconds), ("get", url) or ("exec", argv0).

    The container image is not there, so a hook is read the way the common ones are written: ``sleep N``
    (also inside ``sh -c "...; sleep N"``) sleeps N cloud seconds, ``curl``/``wget`` of a URL is an HTTP GET
    (``localhost``/``127.0.0.1`` is the pod IP: containers of a pod share it), anything else an ``exec`` step
    (run when it is an absolute command of this machine, skipped otherwise)."""
    if not command:
        return []
    if os.path.basename(command[0]) in ("sh", "bash", "ash") and len(command) >= 3 and command[1] == "-c":
        parts = [x.strip() for x in re.split(r";|&&|\|\||\n", command[2]) if x.strip()]
    else:
        parts = [" ".join(command)]
    steps: list[tuple[str, str]] = []
    for part in parts:
        if m := _SLEEP.match(part):
            steps.append(("sleep", m.group(1)))
        elif m := _FETCH.match(part):
            urls = [w for w in m.group(1).split() if not w.startswith("-")]
            if urls:
                steps.append(("get", urls[-1]))
        else:
            steps.append(("exec", part))
    return steps


class ContainerRunner:
    """One container of a pod: pull (resolve), run, probe, restart."""

    def __init__(self, worker: PodWorker, spec: dict[str, Any], record: ContainerRecord) -> None:
        self.w = worker
        self.spec = spec
        self.rec = record
        self.proc: ContainerProcess | None = None
        self.failures = 0  # consecutive crash restarts (back-off index)
        self.pull_failures = 0
        self._liveness_failed = asyncio.Event()

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def field_path(self) -> str:
        return f"spec.containers{{{self.name}}}"

    async def run(self) -> None:
        policy = self.w.pod.get("spec", {}).get("restartPolicy") or "Always"
        while not self.w.stopping:
            env = await self.w.container_env(self.spec)
            if env is None:
                await self.w.clock_sleep(BACKOFF_INITIAL)
                continue
            mounts = self.w.container_mounts(self.spec)
            command = [translate_paths(expand_vars(x, env), mounts) for x in self.spec.get("command") or []] or None
            args = [translate_paths(expand_vars(x, env), mounts) for x in self.spec.get("args") or []] or None
            env = {k: translate_paths(v, mounts) for k, v in env.items()}
            image = self.spec.get("image", "")
            try:
                runspec = resolve_runtime(image, command, args, env) if image else None
            except StartError as exc:
                runspec = None
                code = await self._start_error(str(exc))
            else:
                if runspec is None:
                    await self._image_pull_backoff(image)
                    continue
                self.pull_failures = 0
                code = await self._run_once(image, runspec, env, mounts)
            if self.w.stopping:
                return
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if not restart:
                return
            ran = self.rec.finished_at - self.rec.started_at
            if ran * self.w.ctx.time_scale >= BACKOFF_RESET:
                self.failures = 0
            self.failures += 1
            delay = _backoff(self.failures)
            self.rec.last_state = self.rec.terminated_snapshot()
            if delay > 0:
                self.rec.state, self.rec.reason = "waiting", "CrashLoopBackOff"
                self.rec.message = (
                    f"back-off {int(delay)}s restarting failed container={self.name} "
                    f"pod={self.w.name}_{self.w.ns}({self.w.uid})"
                )
                self.rec.ready = False
                await self.w.push()
                await self.w.event(
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {self.name} in pod {self.w.name}_{self.w.ns}({self.w.uid})",
                    self.field_path,
                )
                await self.w.clock_sleep(delay)
                if self.w.stopping:
                    return
            self.rec.restart_count += 1

    async def _start_error(self, why: str) -> int:
        """containerd could not start the process: terminated with StartError / exit 128, then back-off."""
        now = time.time()
        self.rec.container_id = "containerd://" + secrets.token_hex(32)
        self.rec.state, self.rec.reason, self.rec.exit_code = "terminated", "StartError", 128
        self.rec.message = f"failed to create containerd task: failed to create shim task: {why}"
        self.rec.started_at = self.rec.finished_at = now
        self.rec.ready = False
        await self.w.push()
        await self.w.event("Warning", "Failed", f"Error: {self.rec.message}", self.field_path)
        return 128

    async def _image_pull_backoff(self, image: str) -> None:
        self.pull_failures += 1
        self.rec.state, self.rec.reason, self.rec.ready = "waiting", "ErrImagePull", False
        why = (
            (
                f'failed to pull and unpack image "{image}": the ACK sandbox cannot run this image '
                f"(no local runtime is registered for it)"
            )
            if image
            else "image is empty"
        )
        self.rec.message = f"rpc error: code = NotFound desc = {why}"
        await self.w.event("Normal", "Pulling", f'Pulling image "{image}"', self.field_path)
        await self.w.push()
        await self.w.event("Warning", "Failed", f'Failed to pull image "{image}": {self.rec.message}', self.field_path)
        await self.w.event("Warning", "Failed", "Error: ErrImagePull", self.field_path)
        delay = min(BACKOFF_INITIAL * 2 ** (self.pull_failures - 1), BACKOFF_MAX)
        await self.w.clock_sleep(min(delay, 2.0))  # ErrImagePull is shown briefly before the back-off starts
        if self.w.stopping:
            return
        self.rec.reason, self.rec.message = "ImagePullBackOff", f'Back-off pulling image "{image}"'
        await self.w.push()
        await self.w.event("Normal", "BackOff", f'Back-off pulling image "{image}"', self.field_path)
        await self.w.event("Warning", "Failed", "Error: ImagePullBackOff", self.field_path)
        await self.w.clock_sleep(delay)

    async def _run_once(self, image: str, runspec: RunSpec, env: dict[str, str], mounts: dict[str, str]) -> int:
        w = self.w
        if self.rec.restart_count == 0 and not self.rec.container_id:
            await w.event("Normal", "Pulled", f'Container image "{image}" already present on machine', self.field_path)
        full_env = {
            **w.base_env(),
            **env,
            **runspec.env,
            # The runtimes' contract (ack_sandbox.runtimes.common): the pod IP and container path -> local dir.
            "ACK_SANDBOX_POD_IP": w.ip,
            "ACK_SANDBOX_MOUNTS": json.dumps(mounts),
            "SANDBOX_VOLUME_MOUNTS": json.dumps(mounts),
            "SANDBOX_CONTAINER_NAME": self.name,
            # a container no probe gates takes traffic at once: starting it low would only slow it down
            **startup_priority_env(gated=bool(self.spec.get("readinessProbe") or self.spec.get("startupProbe"))),
        }
        log_path = logs.container_log_path(w.ctx, w.ns, w.name, w.uid, self.name, self.rec.restart_count)
        cwd = log_path.parent / "rootfs"
        working_dir = self.spec.get("workingDir")
        if working_dir:
            translated = translate_paths(working_dir, mounts)
            if translated != working_dir and Path(translated).is_dir():
                cwd = Path(translated)
        self.proc = ContainerProcess(runspec.argv, full_env, cwd, log_path)
        try:
            await self.proc.start()
        except OSError as exc:
            self.rec.state, self.rec.reason = "waiting", "RunContainerError"
            self.rec.message = f"failed to create containerd task: exec: {runspec.argv[0]!r}: {exc.strerror}"
            await w.push()
            await w.event("Warning", "Failed", f"Error: {self.rec.message}", self.field_path)
            self.rec.state, self.rec.exit_code = "terminated", 128
            self.rec.started_at = self.rec.finished_at = time.time()
            return 128
        w.kubelet.pids.add(self.proc.pid or 0, f"{w.ns}/{w.name}")
        self.rec.container_id = "containerd://" + secrets.token_hex(32)
        self.rec.state, self.rec.reason, self.rec.message = "running", "", ""
        self.rec.started_at = self.proc.started_at
        self.rec.exit_code = None
        startup = self.spec.get("startupProbe")
        self.rec.started = startup is None
        self.rec.ready = self.spec.get("readinessProbe") is None and startup is None
        await w.event("Normal", "Created", f"Created container {self.name}", self.field_path)
        await w.event("Normal", "Started", f"Started container {self.name}", self.field_path)
        await w.push()
        self._liveness_failed.clear()
        probe_task = asyncio.get_running_loop().create_task(self._probe_loop())
        wait_task = asyncio.get_running_loop().create_task(self.proc.wait())
        live_task = asyncio.get_running_loop().create_task(self._liveness_failed.wait())
        try:
            await asyncio.wait({wait_task, live_task}, return_when=asyncio.FIRST_COMPLETED)
            if not wait_task.done():  # liveness failed: kill and restart
                await w.event(
                    "Normal",
                    "Killing",
                    f"Container {self.name} failed liveness probe, will be restarted",
                    self.field_path,
                )
                await self._kill(w.grace_real())  # killContainer: preStop hook, SIGTERM, SIGKILL
            code = await wait_task
        finally:
            probe_task.cancel()
            live_task.cancel()
            w.kubelet.pids.remove(self.proc.pid or 0)
        self.rec.state = "terminated"
        self.rec.exit_code = code
        self.rec.finished_at = self.proc.finished_at or time.time()
        self.rec.reason = "Completed" if code == 0 else "Error"
        self.rec.message = ""
        self.rec.ready = False
        if not w.stopping:
            await w.push()
        return code

    async def _pre_stop(self, hook: dict[str, Any]) -> None:
        """Run a preStop handler: exec, httpGet (to the pod IP), or sleep (``lifecycle.preStop.sleep``)."""
        w = self.w
        if "sleep" in hook:
            await w.clock_sleep(float((hook["sleep"] or {}).get("seconds") or 0))
            return
        if "httpGet" in hook:
            g = hook["httpGet"]
            port = resolve_port(g.get("port"), self.spec)
            path = g.get("path") or "/"
            url = f"{(g.get('scheme') or 'HTTP').lower()}://{g.get('host') or w.ip}:{port}{'' if path.startswith('/') else '/'}{path}"
            headers = {x["name"]: x.get("value", "") for x in g.get("httpHeaders") or []}
            async with w.kubelet.session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status >= 400:
                    raise RuntimeError(
                        f'HTTP lifecycle hook ({path}) for Container "{self.name}" failed: {resp.status}'
                    )
            return
        if "exec" in hook:
            command = [str(x) for x in (hook["exec"] or {}).get("command") or []]
            for kind, arg in hook_steps(command):
                if kind == "sleep":
                    await w.clock_sleep(float(arg))
                elif kind == "get":
                    url = arg if "://" in arg else "http://" + arg
                    url = re.sub(r"^(\w+://)(localhost|127\.0\.0\.1)(?=[:/]|$)", lambda m: m.group(1) + w.ip, url)
                    try:
                        async with w.kubelet.session.get(url, allow_redirects=False) as resp:
                            await resp.read()
                    except (aiohttp.ClientError, OSError):
                        pass  # curl's failure does not fail a `sh -c "curl ...; sleep N"` hook
                elif kind == "exec":
                    argv = arg.split()
                    if argv and os.path.isabs(argv[0]) and os.access(argv[0], os.X_OK):
                        proc = await asyncio.create_subprocess_exec(
                            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                        )
                        code = await proc.wait()
                        if code != 0 and len(hook_steps(command)) == 1:
                            raise RuntimeError(
                                f'Exec lifecycle hook ({command}) for Container "{self.name}" failed: exit {code}'
                            )

    async def _probe_loop(self) -> None:
        """Startup, then readiness and liveness, each on its own period (prober.worker)."""
        specs = {
            k: ProbeSpec.from_k8s(self.spec[k])
            for k in ("startupProbe", "readinessProbe", "livenessProbe")
            if self.spec.get(k)
        }
        if not specs:
            return
        tasks = []
        if "startupProbe" in specs:
            await self._run_probe_kind("startupProbe", specs["startupProbe"])
        for kind in ("readinessProbe", "livenessProbe"):
            if kind in specs:
                tasks.append(asyncio.get_running_loop().create_task(self._run_probe_kind(kind, specs[kind])))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _run_probe_kind(self, kind: str, spec: ProbeSpec) -> None:
        w = self.w
        label = {"startupProbe": "Startup", "readinessProbe": "Readiness", "livenessProbe": "Liveness"}[kind]
        await w.clock_sleep(spec.initial_delay)
        successes = 0
        streak = FailureStreak(spec)
        while self.proc is not None and self.proc.running() and not w.stopping:
            result = await run_probe(spec, w.ip, self.spec, w.kubelet.session)
            now = time.monotonic()
            if result.ok:
                successes += 1
                streak.reset()
            else:
                successes = 0
                streak.add(result, now)
                await w.event("Warning", "Unhealthy", f"{label} probe failed: {result.message}", self.field_path)
            failed = streak.reached(now)
            if kind == "startupProbe":
                if successes >= spec.success_threshold:
                    self.rec.started = True
                    if self.spec.get("readinessProbe") is None:
                        self.rec.ready = True
                    await w.push()
                    return
                if failed:
                    self._liveness_failed.set()
                    return
            elif kind == "readinessProbe":
                ready = self.rec.ready
                if successes >= spec.success_threshold:
                    ready = True
                elif failed:
                    ready = False
                if ready != self.rec.ready and self.rec.started:
                    self.rec.ready = ready
                    await w.push()
            elif failed:
                self._liveness_failed.set()
                return
            await w.clock_sleep(spec.period)

    async def stop(self, grace_real: float) -> None:
        """killContainer (kuberuntime_container.go): the preStop hook within the grace period, then SIGTERM,
        then SIGKILL when the rest of the grace period (at least minimumGracePeriodInSeconds, 2 s, unless the
        deletion was forced with grace 0) has passed."""
        if self.proc is not None and self.proc.running():
            await self.w.event("Normal", "Killing", f"Stopping container {self.name}", self.field_path)
            await self._kill(grace_real)
            self.rec.state = "terminated"
            self.rec.exit_code = self.proc.exit_code
            self.rec.finished_at = self.proc.finished_at or time.time()
            self.rec.reason = "Completed" if self.proc.exit_code == 0 else "Error"
            self.rec.ready = False

    async def _kill(self, grace_real: float) -> None:
        if self.proc is not None and self.proc.running():
            hook = ((self.spec.get("lifecycle") or {}).get("preStop")) or None
            if hook and grace_real > 0:
                started = time.monotonic()
                try:
                    await asyncio.wait_for(self._pre_stop(hook), grace_real)
                except TimeoutError:
                    pass  # the hook ran out of the grace period: the container is stopped anyway
                except Exception as exc:  # noqa: BLE001 - a failed hook is an event, the stop goes on
                    await self.w.event(
                        "Warning",
                        "FailedPreStopHook",
                        f"PreStopHook failed: {exc}",
                        self.field_path,
                    )
                grace_real -= time.monotonic() - started
            if not self.proc.running():
                await self.proc.wait()  # it exited during the hook
                return
            if self.w.grace_real() > 0:  # "always give containers a minimal shutdown window" (not when forced)
                grace_real = max(grace_real, self.w.ctx.clock.real_seconds(MIN_GRACE_AFTER_HOOK))
            await self.proc.terminate(grace_real)
