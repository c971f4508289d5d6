"""Pod status as a real kubelet reports it (pkg/kubelet/kubelet_pods.go ``generateAPIPodStatus``).

Pure functions over the worker's per-container records: ``containerStatuses`` with state
waiting/running/terminated, lastState, ready, started, restartCount, image, imageID, containerID; the
phase (``getPhase``); and the conditions PodReadyToStartContainers, Initialized, Ready, ContainersReady,
PodScheduled with the upstream reasons/messages (``ContainersNotReady``: "containers with unready status:
[a b]").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ack_sandbox.controllers.base import now_iso, set_condition


def image_ref(image: str) -> str:
    """The normalised reference containerd reports as ``image`` (docker.io/library/ for short names)."""
    first = image.split("/")[0]
    if "/" not in image:
        name = "docker.io/library/" + image
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + image
    else:
        name = image
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


def image_id(image: str) -> str:
    """A stable ``repo@sha256:<digest>`` for the image (the sandbox has no registry digest)."""
    ref = image_ref(image)
    repo = ref.rsplit(":", 1)[0] if "@" not in ref else ref.split("@")[0]
    return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


@dataclass
class ContainerRecord:
    name: str
    image: str
    restart_count: int = 0
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"  # waiting/terminated reason
    message: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int | None = None
    container_id: str = ""
    ready: bool = False
    started: bool = False  # startup probe passed (or none) and running
    last_state: dict[str, Any] = field(default_factory=dict)

    def to_status(self) -> dict[str, Any]:
        if self.state == "running":
            state: dict[str, Any] = {"running": {"startedAt": now_iso(self.started_at)}}
        elif self.state == "terminated":
            term: dict[str, Any] = {
                "exitCode": self.exit_code if self.exit_code is not None else 0,
                "reason": self.reason,
                "startedAt": now_iso(self.started_at),
                "finishedAt": now_iso(self.finished_at),
                "containerID": self.container_id,
            }
            if self.message:
                term["message"] = self.message
            state = {"terminated": term}
        else:
            waiting: dict[str, Any] = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        status: dict[str, Any] = {
            "name": self.name,
            "state": state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": image_ref(self.image),
            "imageID": image_id(self.image) if self.container_id else "",
            "started": self.state == "running" and self.started,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status

    def terminated_snapshot(self) -> dict[str, Any]:
        term: dict[str, Any] = {
            "exitCode": self.exit_code if self.exit_code is not None else 0,
            "reason": self.reason,
            "startedAt": now_iso(self.started_at),
            "finishedAt": now_iso(self.finished_at),
            "containerID": self.container_id,
        }
        if self.message:
            term["message"] = self.message
        return {"terminated": term}


def pod_phase(restart_policy: str, records: list[ContainerRecord], initialized: bool) -> str:
    """``getPhase`` for regular containers."""
    if not initialized:
        return "Pending"
    running = sum(1 for r in records if r.state == "running")
    waiting = sum(1 for r in records if r.state == "waiting")
    stopped = sum(1 for r in records if r.state == "terminated")
    succeeded = sum(1 for r in records if r.state == "terminated" and r.exit_code == 0)
    restarting = sum(1 for r in records if r.state == "waiting" and r.last_state)
    if waiting and waiting > restarting:
        return "Pending"
    if running or (restarting and restart_policy != "Never"):
        return "Running"
    if stopped == len(records) and records:
        if restart_policy == "Always":
            return "Running"
        return "Succeeded" if succeeded == stopped else "Failed"
    return "Pending"


def qos_class(pod: dict[str, Any]) -> str:
    containers = pod.get("spec", {}).get("containers") or []
    reqs_any = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            reqs_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not reqs_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def build_status(
    pod: dict[str, Any],
    records: list[ContainerRecord],
    *,
    pod_ip: str,
    host_ip: str,
    start_time: float,
    sandbox_ready: bool,
    initialized: bool = True,
) -> dict[str, Any]:
    """The whole ``status`` the kubelet writes (conditions keep their transition times)."""
    old = pod.get("status") or {}
    conds: list[dict[str, Any]] = [dict(c) for c in old.get("conditions") or []]
    restart_policy = pod.get("spec", {}).get("restartPolicy") or "Always"
    set_condition(conds, "PodReadyToStartContainers", "True" if sandbox_ready else "False", None, None, probe_time=True)
    set_condition(conds, "Initialized", "True" if initialized else "False", None, None, probe_time=True)
    unready = [r.name for r in records if not r.ready]
    phase = pod_phase(restart_policy, records, initialized)
    if phase == "Succeeded" or (phase == "Failed"):
        reason = "PodCompleted"
        set_condition(conds, "Ready", "False", reason, None, probe_time=True)
        set_condition(conds, "ContainersReady", "False", reason, None, probe_time=True)
    elif unready:
        msg = f"containers with unready status: [{' '.join(unready)}]"
        set_condition(conds, "Ready", "False", "ContainersNotReady", msg, probe_time=True)
        set_condition(conds, "ContainersReady", "False", "ContainersNotReady", msg, probe_time=True)
    else:
        set_condition(conds, "Ready", "True", None, None, probe_time=True)
        set_condition(conds, "ContainersReady", "True", None, None, probe_time=True)
    set_condition(conds, "PodScheduled", "True", None, None, probe_time=True)
    order = {"PodReadyToStartContainers": 0, "Initialized": 1, "Ready": 2, "ContainersReady": 3, "PodScheduled": 4}
    conds.sort(key=lambda c: order.get(c["type"], 9))
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conds,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "startTime": now_iso(start_time),
        "containerStatuses": [r.to_status() for r in records],
        "qosClass": qos_class(pod),
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
