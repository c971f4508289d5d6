"""The kubelet: pods bound to a node really run, one local process per container.

For every pod bound to a node the kubelet runs a ``PodWorker``:

1. mounts the pod's volumes (``controllers.volumes``; failures -> ``FailedMount`` event, the pod stays
   ``ContainerCreating`` and the mount is retried);
2. gives the pod its own loopback IP (``kubelet.ips``), shared by its containers;
3. runs each container as a local process chosen by image (``ack_sandbox.runtimes.registry.resolve``;
   an image the sandbox cannot run -> ``ErrImagePull``/``ImagePullBackOff`` with events), with the pod IP in
   ``POD_IP``, container paths of volume mounts rewritten to local directories in command/args/env (and
   the map in ``SANDBOX_VOLUME_MOUNTS``), stdout+stderr to the container log (``kubelet.logs``);
4. runs readiness/liveness/startup probes, restarts containers by ``restartPolicy`` with the kubelet's
   back-off (immediately, then 10 s, 20 s, 40 s ... capped at 300 s, cloud seconds; ``CrashLoopBackOff``
   while waiting), and writes pod status as a real kubelet does (``kubelet.status``);
5. on deletion sends SIGTERM, waits the grace period (compressed), SIGKILLs, then removes the pod object
   (the kubelet's final ``delete`` with grace 0).

The node's own IP (``status.hostIP``) is the Node's InternalIP. On daemon stop every process group is
killed; on daemon start, pods already bound get their processes started again (restartCount goes up, as
after a node reboot) and process groups a crashed daemon left behind are reaped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from ack_sandbox.controllers.base import (
    CONFIGMAPS,
    NODES,
    PODS,
    SECRETS,
    Controller,
    Key,
    Kind,
    Obj,
    is_not_found,
    key_of,
)
from ack_sandbox.kubelet import logs
from ack_sandbox.kubelet.ips import IpPool, block_for
from ack_sandbox.kubelet.probes import ProbeSpec, run_probe
from ack_sandbox.kubelet.process import ContainerProcess, PidFile, startup_priority_env
from ack_sandbox.kubelet.status import ContainerRecord, build_status

log = logging.getLogger("ack_sandbox.controllers.kubelet")

BACKOFF_INITIAL = 10.0  # cloud seconds (kubelet: initial container/image back-off 10 s)
BACKOFF_MAX = 300.0  # cloud seconds (MaxContainerBackOff 5 min)
BACKOFF_RESET = 600.0  # a container that ran this long resets its back-off (2 x MaxContainerBackOff)
MOUNT_RETRY = 2.0  # cloud seconds between mount attempts (volume manager's reconciler loop ~100ms-2s)


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
            **startup_priority_env(),
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
                await self.proc.terminate(w.grace_real())
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
        successes = failures = 0
        while self.proc is not None and self.proc.running() and not w.stopping:
            ok, message = await run_probe(spec, w.ip, self.spec, w.kubelet.session)
            if ok:
                successes, failures = successes + 1, 0
            else:
                failures, successes = failures + 1, 0
                await w.event("Warning", "Unhealthy", f"{label} probe failed: {message}", self.field_path)
            if kind == "startupProbe":
                if successes >= spec.success_threshold:
                    self.rec.started = True
                    if self.spec.get("readinessProbe") is None:
                        self.rec.ready = True
                    await w.push()
                    return
                if failures >= spec.failure_threshold:
                    self._liveness_failed.set()
                    return
            elif kind == "readinessProbe":
                ready = self.rec.ready
                if successes >= spec.success_threshold:
                    ready = True
                elif failures >= spec.failure_threshold:
                    ready = False
                if ready != self.rec.ready and self.rec.started:
                    self.rec.ready = ready
                    await w.push()
            elif failures >= spec.failure_threshold:
                self._liveness_failed.set()
                return
            await w.clock_sleep(spec.period)

    async def stop(self, grace_real: float) -> None:
        if self.proc is not None and self.proc.running():
            await self.w.event("Normal", "Killing", f"Stopping container {self.name}", self.field_path)
            await self.proc.terminate(grace_real)
            self.rec.state = "terminated"
            self.rec.exit_code = self.proc.exit_code
            self.rec.finished_at = self.proc.finished_at or time.time()
            self.rec.reason = "Completed" if self.proc.exit_code == 0 else "Error"
            self.rec.ready = False


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: Obj, node: Obj) -> None:
        self.kubelet = kubelet
        self.ctx = kubelet.ctx
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta.get("namespace", "default"), meta["name"], meta["uid"]
        self.node_name = node["metadata"]["name"]
        self.host_ip = next(
            (a["address"] for a in node.get("status", {}).get("addresses") or [] if a.get("type") == "InternalIP"), ""
        )
        self.ip = ""
        self.stopping = False
        self.start_time = time.time()
        old = {c["name"]: c for c in pod.get("status", {}).get("containerStatuses") or []}
        self.records: list[ContainerRecord] = []
        for c in pod["spec"].get("containers") or []:
            rec = ContainerRecord(name=c["name"], image=c.get("image", ""))
            prev = old.get(c["name"])
            if prev:  # the daemon restarted: the containers restart, as after a node reboot
                rec.restart_count = int(prev.get("restartCount") or 0) + (1 if prev.get("containerID") else 0)
            self.records.append(rec)
        self.runners = [ContainerRunner(self, c, r) for c, r in zip(pod["spec"].get("containers") or [], self.records)]
        self.volume_dirs: dict[str, str] = {}
        self.sandbox_ready = False
        self._task: asyncio.Task[None] | None = None
        self._push_lock = asyncio.Lock()
        self._gone = False

    @property
    def pod_dir(self) -> Path:
        return logs.pod_dir(self.ctx, self.ns, self.name, self.uid)

    def key(self) -> Key:
        return (self.ns, self.name)

    async def clock_sleep(self, cloud_seconds: float) -> None:
        if cloud_seconds > 0:
            await self.ctx.clock.sleep(cloud_seconds)

    def grace_real(self) -> float:
        meta = self.pod.get("metadata", {})
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        return self.ctx.clock.real_seconds(float(grace))

    async def event(self, etype: str, reason: str, message: str, field_path: str | None = None) -> None:
        await self.kubelet.events.record(self.pod, etype, reason, message, field_path=field_path, host=self.node_name)

    def base_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k in ("PATH", "LANG", "LC_ALL", "HOME", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR", "ACK_SANDBOX_LOG_LEVEL")
        }
        env.update(
            {
                "HOSTNAME": self.name,
                "POD_IP": self.ip,
                "POD_NAME": self.name,
                "POD_NAMESPACE": self.ns,
                "NODE_NAME": self.node_name,
                "HOST_IP": self.host_ip,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def container_mounts(self, container: dict[str, Any]) -> dict[str, str]:
        mounts: dict[str, str] = {}
        for vm in container.get("volumeMounts") or []:
            local = self.volume_dirs.get(vm.get("name", ""))
            if local is None or not vm.get("mountPath"):
                continue
            sub = vm.get("subPath")
            mounts[vm["mountPath"]] = str(Path(local) / sub) if sub else local
        return mounts

    async def container_env(self, container: dict[str, Any]) -> dict[str, str] | None:
        """Resolved env (value, fieldRef, secretKeyRef, configMapKeyRef, envFrom); None after reporting
        ``CreateContainerConfigError`` when a referenced key is missing."""
        env: dict[str, str] = {}
        try:
            for src in container.get("envFrom") or []:
                prefix = src.get("prefix", "")
                if "configMapRef" in src:
                    data = await self._ref_data(CONFIGMAPS, src["configMapRef"], None)
                elif "secretRef" in src:
                    data = await self._ref_data(SECRETS, src["secretRef"], None)
                else:
                    continue
                env.update({prefix + k: v for k, v in (data or {}).items()})
            for item in container.get("env") or []:
                name = item["name"]
                if "value" in item or "valueFrom" not in item:
                    env[name] = expand_vars(str(item.get("value", "")), env)
                    continue
                vf = item["valueFrom"]
                if "fieldRef" in vf:
                    env[name] = self._field(vf["fieldRef"].get("fieldPath", ""))
                elif "secretKeyRef" in vf:
                    value = await self._ref_data(SECRETS, vf["secretKeyRef"], vf["secretKeyRef"].get("key"))
                    if value is not None:
                        env[name] = value
                elif "configMapKeyRef" in vf:
                    value = await self._ref_data(CONFIGMAPS, vf["configMapKeyRef"], vf["configMapKeyRef"].get("key"))
                    if value is not None:
                        env[name] = value
                elif "resourceFieldRef" in vf:
                    env[name] = "0"
        except LookupError as exc:
            rec = next(r for r in self.records if r.name == container["name"])
            rec.state, rec.reason, rec.message, rec.ready = "waiting", "CreateContainerConfigError", str(exc), False
            await self.push()
            await self.event("Warning", "Failed", f"Error: {exc}", f"spec.containers{{{container['name']}}}")
            return None
        return env

    def _field(self, path: str) -> str:
        meta = self.pod["metadata"]
        simple = {
            "metadata.name": self.name,
            "metadata.namespace": self.ns,
            "metadata.uid": self.uid,
            "spec.nodeName": self.node_name,
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default"),
            "status.podIP": self.ip,
            "status.hostIP": self.host_ip,
            "status.podIPs": self.ip,
            "status.hostIPs": self.host_ip,
        }
        if path in simple:
            return simple[path]
        m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
        if m:
            return (meta.get(m.group(1)) or {}).get(m.group(2), "")
        return ""

    async def _ref_data(self, kind: Kind, ref: dict[str, Any], key: str | None) -> Any:
        obj = await self.kubelet.api.get_or_none(kind, self.ns, ref.get("name", ""))
        what = "secret" if kind == SECRETS else "configmap"
        if obj is None:
            if ref.get("optional"):
                return None
            raise LookupError(f'{what} "{ref.get("name")}" not found')
        data = dict(obj.get("data") or {})
        if kind == SECRETS:
            from ack_sandbox.controllers.volumes import secret_bytes

            data = {k: v.decode(errors="replace") for k, v in secret_bytes(obj).items()}
        if key is None:
            return data
        if key not in data:
            if ref.get("optional"):
                return None
            raise LookupError(
                f"couldn't find key {key} in {'Secret' if kind == SECRETS else 'ConfigMap'} {self.ns}/{ref.get('name')}"
            )
        return data[key]

    async def push(self) -> None:
        """Write the pod's status (merge patch of the status subresource)."""
        if self._gone:
            return
        async with self._push_lock:
            status = build_status(
                self.pod,
                self.records,
                pod_ip=self.ip,
                host_ip=self.host_ip,
                start_time=self.start_time,
                sandbox_ready=self.sandbox_ready,
            )
            try:
                updated = await self.kubelet.api.patch(
                    PODS, self.ns, self.name, {"status": status}, subresource="status"
                )
            except Exception as exc:
                if is_not_found(exc):
                    self._gone = True
                    return
                log.warning("kubelet: status update of %s/%s failed: %s", self.ns, self.name, exc)
                return
            if updated.get("metadata", {}).get("uid") == self.uid:
                self.pod = updated

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pod-{self.ns}-{self.name}")

    async def _run(self) -> None:
        await self.push()  # Pending / ContainerCreating, PodScheduled=True
        attempt = 0
        from ack_sandbox.controllers.volumes import MountError, mount_pod_volumes

        while not self.stopping:
            try:
                self.volume_dirs = await mount_pod_volumes(self.ctx, self.kubelet.api, self.pod, self.pod_dir)
                break
            except MountError as exc:
                attempt += 1
                await self.event("Warning", "FailedMount", str(exc))
                await self.clock_sleep(min(MOUNT_RETRY * 2 ** min(attempt - 1, 6), 120.0))
        if self.stopping:
            return
        recorded = self.pod.get("status", {}).get("podIP")
        if recorded and self.kubelet.ips.reserve(recorded, self.uid):
            self.ip = recorded
        else:
            self.ip = self.kubelet.ips.allocate(self.uid)
        self.sandbox_ready = True
        await self.push()
        await asyncio.gather(*(r.run() for r in self.runners), return_exceptions=True)
        if not self.stopping:
            await self.push()

    async def terminate(self, final_delete: bool) -> None:
        """Graceful stop of every container, then (if the pod object is still there) the final delete."""
        if self.stopping:
            return
        self.stopping = True
        grace = self.grace_real()
        await asyncio.gather(*(r.stop(grace) for r in self.runners), return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for r in self.runners:
            if r.proc is not None:
                r.proc.kill_now()
        if final_delete and not self._gone:
            try:
                await self.push()
                await self.kubelet.api.delete(PODS, self.ns, self.name, grace_period_seconds=0, uid=self.uid)
            except Exception as exc:
                log.debug("final delete of %s/%s: %s", self.ns, self.name, exc)
        self.kubelet.ips.release(self.uid)
        from ack_sandbox.controllers.volumes import unmount_pod_volumes

        unmount_pod_volumes(self.pod_dir)
        if final_delete or self._gone:
            # The pod object is gone: its logs go with it (the kubelet's pod directory cleanup).
            shutil.rmtree(self.pod_dir, ignore_errors=True)

    def kill_now(self) -> None:
        self.stopping = True
        for r in self.runners:
            if r.proc is not None:
                r.proc.kill_now()
        if self._task is not None:
            self._task.cancel()


class Kubelet(Controller):
    """One kubelet for every node of the sandbox (the Node objects say which nodes exist)."""

    name = "kubelet"
    primary = PODS
    watches = (NODES,)
    resync = 60.0
    workers = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ips = IpPool(block_for(self.ctx.state_dir))
        self.pods: dict[str, PodWorker] = {}  # uid -> worker
        self.pids = PidFile(self.ctx.service_dir("kubelet") / "pids.json")
        self.session: aiohttp.ClientSession | None = None  # type: ignore[assignment]
        self._bg: set[asyncio.Task[Any]] = set()

    async def on_start(self) -> None:
        reaped = self.pids.reap_leftovers()
        if reaped:
            log.warning("kubelet: killed %d container process groups left by a previous daemon", reaped)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        try:
            from ack_sandbox.k8s.service import set_log_source
        except ImportError:
            return
        set_log_source(self.ctx, self.log_source)

    async def log_source(self, pod: Obj, container: str, query: dict[str, str]) -> Any:
        """``GET pods/{name}/log``: the container's real output (``previous``, ``tailLines``, ``limitBytes``,
        ``follow``), or the apiserver's 400 when there is none yet."""
        from ack_sandbox.k8s.errors import bad_request

        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", "default"), meta["name"], meta.get("uid")
        previous = query.get("previous", "").lower() == "true"
        tail = int(query["tailLines"]) if query.get("tailLines", "").lstrip("-").isdigit() else None
        limit = int(query["limitBytes"]) if query.get("limitBytes", "").isdigit() else None
        data = logs.read_container_log(
            self.ctx, ns, name, uid, container, previous=previous, tail_lines=tail, limit_bytes=limit
        )
        if data is None:
            if previous:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            statuses = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or []}
            reason = (((statuses.get(container) or {}).get("state") or {}).get("waiting") or {}).get(
                "reason", "ContainerCreating"
            )
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        if query.get("follow", "").lower() != "true" or previous:
            return data
        return self._follow(ns, name, uid or "", container, data)

    async def _follow(self, ns: str, name: str, uid: str, container: str, first: bytes) -> Any:
        yield first
        path = logs.find_log(self.ctx, ns, name, uid, container)
        offset = path.stat().st_size if path is not None and path.exists() else 0
        for _ in range(36000):  # at most ~2 h of following
            worker = self.pods.get(uid)
            runner = next((r for r in worker.runners if r.name == container), None) if worker else None
            if path is not None and path.exists() and path.stat().st_size > offset:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                offset += len(chunk)
                yield chunk
            elif runner is None or runner.proc is None or not runner.proc.running():
                return
            await asyncio.sleep(0.2)

    async def on_stop(self) -> None:
        workers = list(self.pods.values())
        for w in workers:
            w.kill_now()
        for w in workers:
            for r in w.runners:
                if r.proc is not None and r.proc.proc is not None:
                    try:
                        await asyncio.wait_for(r.proc.proc.wait(), 5)
                    except (TimeoutError, ProcessLookupError):
                        pass
                    self.pids.remove(r.proc.pid or 0)
        for t in list(self._bg):
            t.cancel()
        self.pods.clear()
        if self.session is not None:
            await self.session.close()

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == PODS:
            if etype == "DELETED":
                uid = obj["metadata"].get("uid", "")
                w = self.pods.get(uid)
                if w is not None:
                    self._spawn(self._stop_worker(uid, final_delete=False, force=True))
                return []
            return [key_of(obj)] if obj.get("spec", {}).get("nodeName") else []
        # Node events: pods on a node that appeared (e.g. after a daemon restart) start running.
        name = obj["metadata"]["name"]
        return [w.key() for w in self.pods.values() if w.node_name == name]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _stop_worker(self, uid: str, final_delete: bool, force: bool = False) -> None:
        w = self.pods.get(uid)
        if w is None:
            return
        if force:
            w.pod.setdefault("metadata", {})["deletionGracePeriodSeconds"] = 0
        await w.terminate(final_delete)
        self.pods.pop(uid, None)

    async def reconcile(self, key: Key) -> float | None:
        pod = await self.api.get_or_none(PODS, *key)
        stale = [w for w in self.pods.values() if w.key() == key and (pod is None or w.uid != pod["metadata"]["uid"])]
        for w in stale:
            self._spawn(self._stop_worker(w.uid, final_delete=False, force=True))
        if pod is None:
            return None
        node_name = pod.get("spec", {}).get("nodeName")
        if not node_name:
            return None
        uid = pod["metadata"]["uid"]
        worker = self.pods.get(uid)
        if pod["metadata"].get("deletionTimestamp"):
            if worker is not None:
                worker.pod = pod
                self._spawn(self._stop_worker(uid, final_delete=True))
            else:
                await self.api.delete(PODS, *key, grace_period_seconds=0, uid=uid)
            return None
        if worker is not None:
            return None
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return None
        node = await self.api.get_or_none(NODES, "", node_name)
        if node is None:
            return None  # the pod GC (nodes controller) deletes pods of nodes that are gone
        worker = PodWorker(self, pod, node)
        self.pods[uid] = worker
        worker.start()
        return None
