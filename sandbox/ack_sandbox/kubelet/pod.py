"""One pod on a node, as the kubelet runs it (``PodWorker``): volumes, the pod IP, container env, one
``kubelet.container.ContainerRunner`` per container, status pushes, graceful termination and the final delete.

Driven by the ``ack_sandbox.controllers.kubelet.Kubelet`` controller, one worker per pod.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ack_sandbox.controllers.base import CONFIGMAPS, PODS, SECRETS, Key, Kind, Obj, is_not_found
from ack_sandbox.kubelet import logs
from ack_sandbox.kubelet.container import ContainerRunner, expand_vars
from ack_sandbox.kubelet.status import ContainerRecord, build_status

if TYPE_CHECKING:
    from ack_sandbox.controllers.kubelet import Kubelet

log = logging.getLogger("ack_sandbox.controllers.kubelet")

MOUNT_RETRY = 2.0  # cloud seconds between mount attempts (volume manager's reconciler loop ~100ms-2s)


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
            if vm.get("readOnly"):
                from ack_sandbox.controllers.volumes import read_only_view

                local = read_only_view(self.pod_dir, vm.get("name", ""), local)
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
        from ack_sandbox.controllers.volumes import release_pod_volumes

        release_pod_volumes(self.pod_dir)  # the daemon stops: no mirror left running, no bind mount left behind
