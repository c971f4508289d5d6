"""Pure helpers for the Kubernetes objects the deploy operators manage: REST paths, idempotency checks and
status interpretation. No I/O here, so every rule is unit tested on plain dicts.

A *verdict* is what a wait concludes from what the cluster reports right now: ``pending`` (keep waiting),
``success`` or ``error`` (terminal; the message names the object, the cause and, where there is one, the fix).
The same functions serve the deferrable triggers, the in-process waits and the poke-mode sensors.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Json = dict[str, Any]

# kind -> (plural, namespaced). Kinds not listed fall back to the lower-case kind + "s" and namespaced.
_KINDS: dict[str, tuple[str, bool]] = {
    "Secret": ("secrets", True),
    "PersistentVolume": ("persistentvolumes", False),
    "PersistentVolumeClaim": ("persistentvolumeclaims", True),
    "Pod": ("pods", True),
    "Event": ("events", True),
    "Service": ("services", True),
    "Namespace": ("namespaces", False),
    "Node": ("nodes", False),
    "Deployment": ("deployments", True),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers", True),
    "Ingress": ("ingresses", True),
    "IngressClass": ("ingressclasses", False),
    "SeldonDeployment": ("seldondeployments", True),
}

SELDON_API_VERSION = "machinelearning.seldon.io/v1"
MANAGED_BY = "elastic-inference"


@dataclass(frozen=True)
class ResourceRef:
    """Where one kind lives on the API server (``/api/v1`` for the core group, ``/apis/<group>/<v>`` else)."""

    api_version: str
    kind: str

    @property
    def plural(self) -> str:
        return _KINDS.get(self.kind, (self.kind.lower() + "s", True))[0]

    @property
    def namespaced(self) -> bool:
        return _KINDS.get(self.kind, ("", True))[1]

    def collection_path(self, namespace: str | None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: a namespace is required")
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, namespace: str | None, name: str, subresource: str | None = None) -> str:
        path = f"{self.collection_path(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path


def ref_of(obj: Json) -> ResourceRef:
    return ResourceRef(obj["apiVersion"], obj["kind"])


def describe(obj: Json) -> str:
    """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped) for messages."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind', 'object')} {ns + '/' if ns else ''}{meta.get('name', '?')}"


# ----------------------------------------------------------------------------------------------------- idempotency

_SERVER_OWNED_META = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


def desired_body(obj: Json) -> Json:
    """What we send: the manifest without ``status`` and without server-owned metadata."""
    body = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _SERVER_OWNED_META}
    body["metadata"] = meta
    return body


def _quantity_equal(a: Any, b: Any) -> bool:
    # The API server may normalise numbers to strings (e.g. targetAverageValue 10 -> "10"); treat them as equal.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, str) or isinstance(a, str) and isinstance(b, (int, float)):
        return str(a) == str(b)
    return False


def is_subset(desired: Any, actual: Any) -> bool:
    """True when every field we ask for already has that value (lists compare element-wise, same length).

    Fields the server adds (defaults, status, uid) do not count: a re-run that changes nothing writes nothing.
    """
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        return all(is_subset(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return False
        return all(is_subset(d, a) for d, a in zip(desired, actual))
    if desired == actual:
        return True
    return _quantity_equal(desired, actual)


def secret_manifest(
    name: str, namespace: str, string_data: dict[str, str], labels: dict[str, str] | None = None
) -> Json:
    """An ``Opaque`` Secret carrying ``data`` (base64), so a read-back compares equal and re-runs write nothing."""
    data = {k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, **(labels or {})},
        },
        "type": "Opaque",
        "data": data,
    }


# ------------------------------------------------------------------------------------------------------- verdicts

State = Literal["pending", "success", "error"]


@dataclass(frozen=True)
class Verdict:
    state: State
    message: str
    details: Json = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state != "pending"

    def event(self) -> Json:
        """The TriggerEvent payload of a finished wait: ``{"status": "success"|"error", "message", ...details}``."""
        return {"status": self.state, "message": self.message, **self.details}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _events_for(events: list[Json], kind: str, name: str) -> list[Json]:
    hits = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("kind") == kind and (e.get("involvedObject") or {}).get("name") == name
    ]
    return sorted(hits, key=_event_time)


def _event_time(e: Json) -> datetime:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        value = e.get(key)
        if isinstance(value, str) and (t := parse_time(value)):
            return t
    meta_t = parse_time((e.get("metadata") or {}).get("creationTimestamp"))
    return meta_t or datetime.min.replace(tzinfo=UTC)


# --- PersistentVolumeClaim --------------------------------------------------------------------------------------

# Warnings the PV controller emits on a claim when the PV we named cannot serve it (pkg/controller/volume/
# persistentvolume/pv_controller.go: events.VolumeMismatch, events.ProvisioningFailed, "FailedBinding").
PVC_REJECT_REASONS = frozenset({"VolumeMismatch", "ProvisioningFailed"})


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def parse_quantity(value: Any) -> float:
    """A Kubernetes resource.Quantity (``5Gi``, ``500m``, ``1e3``, ``2``) as a number; ValueError if malformed."""
    text = str(value).strip()
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    if text and text[-1] in _DECIMAL and not text[-1].isdigit():
        return float(text[:-1]) * _DECIMAL[text[-1]]
    return float(text)


def pv_mismatch(pv: Json, pvc: Json) -> str | None:
    """Why ``pv`` can never satisfy ``pvc`` (the PV controller's checkVolumeSatisfyClaim and claimRef rules)."""
    pspec, cspec = pv.get("spec") or {}, pvc.get("spec") or {}
    meta = pvc["metadata"]
    claim = pspec.get("claimRef") or {}
    if claim.get("name") and (
        (claim.get("namespace"), claim.get("name")) != (meta.get("namespace"), meta["name"])
        or claim.get("uid") not in (None, "", meta.get("uid"))
    ):
        return (
            f"it is bound to another claim {claim.get('namespace')}/{claim.get('name')}"
            f"{' (uid ' + claim['uid'] + ')' if claim.get('uid') and claim.get('name') == meta['name'] else ''}"
        )
    if (pspec.get("storageClassName") or "") != (cspec.get("storageClassName") or ""):
        return (
            f"storageClassName {pspec.get('storageClassName') or '(none)'!r} differs from the claim's"
            f" {cspec.get('storageClassName') or '(none)'!r}"
        )
    missing = set(cspec.get("accessModes") or []) - set(pspec.get("accessModes") or [])
    if missing:
        return f"accessModes {pspec.get('accessModes')} lack the claim's {sorted(missing)}"
    want = ((cspec.get("resources") or {}).get("requests") or {}).get("storage")
    have = (pspec.get("capacity") or {}).get("storage")
    try:
        if want is not None and have is not None and parse_quantity(have) < parse_quantity(want):
            return f"capacity {have} is less than the claim's request {want}"
    except ValueError:
        pass
    if (cspec.get("volumeMode") or "Filesystem") != (pspec.get("volumeMode") or "Filesystem"):
        return f"volumeMode {pspec.get('volumeMode')} differs from the claim's {cspec.get('volumeMode')}"
    labels = (pv.get("metadata") or {}).get("labels") or {}
    wanted = ((cspec.get("selector") or {}).get("matchLabels")) or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return f"its labels {labels} do not match the claim's selector {wanted}"
    return None


def pvc_verdict(
    pvc: Json | None, pv: Json | None = None, events: list[Json] | None = None, *, pv_name: str | None = None
) -> Verdict:
    """Bound → success (with ``pv_name``, once that PV is seen too). Fails fast when the claim is Lost, or its PV
    is Failed, Released, missing (``pv_name`` given and no such PV for a claim not bound yet: the operator just
    created it), or can never satisfy the claim (bound elsewhere,
    class / access modes / capacity / selector mismatch), or the PV controller reports a mismatch."""
    if pvc is None:
        return Verdict("pending", "PersistentVolumeClaim not found yet")
    what = describe(pvc)
    phase = (pvc.get("status") or {}).get("phase") or "Pending"
    volume = (
        (pvc.get("spec") or {}).get("volumeName") or pv_name or ((pv or {}).get("metadata") or {}).get("name") or ""
    )
    details = {"phase": phase, "pvc": pvc["metadata"]["name"], "pv": volume, "pvc_uid": pvc["metadata"].get("uid", "")}
    if phase == "Bound" and pv is None and pv_name:
        # Not Lost yet: the PV and the claim come from two watches, and after a re-list (an API outage, a 410) the
        # claim's may be ahead of the PV's. If the PV is really gone, the PV controller writes Lost on the claim.
        return Verdict("pending", f"{what} is Bound to {volume}; waiting to see PersistentVolume {volume}", details)
    if phase == "Bound":
        if pv is not None:
            details["pv_uid"] = pv["metadata"].get("uid", "")
        return Verdict("success", f"{what} is Bound to PersistentVolume {volume}", details)
    if phase == "Lost":
        return Verdict(
            "error",
            f"{what} is Lost: its PersistentVolume {volume or '(unknown)'} no longer exists or"
            " was deleted. Recreate the PV (re-run the volume task) and the claim.",
            details,
        )
    if pv is None and pv_name:
        return Verdict(
            "error",
            f"{what} can never bind: PersistentVolume {pv_name} does not exist (deleted?)."
            " Re-run the volume task to recreate it.",
            details,
        )
    if pv is not None:
        pv_status = pv.get("status") or {}
        pv_phase = pv_status.get("phase") or ""
        pv_name_ = pv["metadata"]["name"]
        details["pv_phase"] = pv_phase
        cause = pv_status.get("message") or pv_status.get("reason") or ""
        if pv_phase == "Failed":
            return Verdict(
                "error",
                f"{what} cannot bind: PersistentVolume {pv_name_} is Failed"
                f"{': ' + cause if cause else ''}. Fix the PV spec (driver, volumeHandle,"
                " secret) and recreate it.",
                details,
            )
        if (why := pv_mismatch(pv, pvc)) is not None:
            hint = (
                " With the Retain policy a Released PV never binds again: delete and recreate it."
                if pv_phase == "Released"
                else " Use a PV of its own, or fix the claim or the PV."
            )
            return Verdict(
                "error",
                f"{what} can never bind to PersistentVolume {pv_name_} ({pv_phase or 'no phase'}): {why}.{hint}",
                details,
            )
        if pv_phase == "Released":
            return Verdict(
                "error",
                f"{what} cannot bind: PersistentVolume {pv_name_} is Released; with the Retain"
                " policy it never binds again. Delete and recreate the PV.",
                details,
            )
    for e in reversed(_events_for(events or [], "PersistentVolumeClaim", pvc["metadata"]["name"])):
        if e.get("type") == "Warning" and e.get("reason") in PVC_REJECT_REASONS:
            return Verdict("error", f"{what} was rejected: {e['reason']}: {e.get('message', '')}", details)
    return Verdict("pending", f"{what} is {phase}", details)


# --- SeldonDeployment and its pods -----------------------------------------------------------------------------

# Container waiting reasons that mean "this pod will not become ready without a change" (kubelet
# pkg/kubelet/images/types.go and kuberuntime: ErrImagePull, ImagePullBackOff, InvalidImageName,
# CrashLoopBackOff, CreateContainerConfigError, CreateContainerError, RunContainerError).
FATAL_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# cluster-autoscaler (and ACK's autoscaler) events on a pending pod (cluster-autoscaler/core/static_autoscaler.go,
# processors/status/eventing_scale_up_processor.go): NotTriggerScaleUp = "pod didn't trigger scale-up: ...".
NOT_TRIGGER_SCALE_UP = "NotTriggerScaleUp"
FAILED_SCALE_UP = "FailedScaleUp"
# How ECS/ESS and ACK word a scale-out without inventory (OperationDenied.NoStock, "no stock", "out of stock").
_NO_STOCK = ("nostock", "no stock", "out of stock", "insufficient inventory", "resource.soldout", "soldout")


def is_no_stock(text: str) -> bool:
    """Whether a cloud or autoscaler message says the instance types are out of stock."""
    low = text.lower()
    return any(marker in low for marker in _NO_STOCK)


TRIGGERED_SCALE_UP = "TriggeredScaleUp"


def pod_failure(pod: Json) -> str | None:
    """A fatal container state of one pod, as ``container <c>: <Reason>: <message>``, or None."""
    status = pod.get("status") or {}
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (c.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FATAL_WAITING_REASONS:
            text = f"container {c.get('name')}: {reason}"
            if waiting.get("message"):
                text += f": {waiting['message']}"
            last = (c.get("lastState") or {}).get("terminated") or {}
            if reason == "CrashLoopBackOff" and last:
                text += (
                    f" (last exit code {last.get('exitCode')}"
                    f"{', ' + last['reason'] if last.get('reason') else ''}, restarts {c.get('restartCount', 0)})"
                )
            return text
    return None


def _condition(obj: Json, ctype: str) -> Json | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def pod_unschedulable(pod: Json, events: list[Json], now: datetime | None, grace_seconds: float | None) -> str | None:
    """Why a pending pod will not be scheduled, when no node pool can grow for it; None if it may still be."""
    cond = _condition(pod, "PodScheduled")
    if not cond or cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
        return None
    name = pod["metadata"]["name"]
    scaler = [
        e for e in _events_for(events, "Pod", name) if e.get("reason") in (NOT_TRIGGER_SCALE_UP, TRIGGERED_SCALE_UP)
    ]
    if scaler and scaler[-1]["reason"] == NOT_TRIGGER_SCALE_UP:
        why = f"Unschedulable ({cond.get('message', '')}) and {scaler[-1].get('message', 'no node pool can grow')}"
        failed = [e for e in _events_for(events, "Pod", name) if e.get("reason") == FAILED_SCALE_UP]
        if failed:  # the back-off's cause: the autoscaler's last failed scale-up (no stock, quota, ...)
            cause = failed[-1].get("message", "")
            lead = "the node pool is out of stock for its instance types and zones: " if is_no_stock(cause) else ""
            why = f"{lead}{why}; the last scale-up failed: {cause}"
            if lead:
                why += (
                    " - add instance types or vSwitches (zones) to the node pool, allow pay-as-you-go"
                    " (compensate_with_on_demand / on_demand_percentage_above_base_capacity), or retry later"
                )
        return why
    if grace_seconds is not None:
        since = parse_time(cond.get("lastTransitionTime")) or parse_time(pod["metadata"].get("creationTimestamp"))
        if scaler:
            since = max(filter(None, [since, _event_time(scaler[-1])]))
        if since is not None and (_now(now) - since).total_seconds() > grace_seconds:
            return (
                f"Unschedulable for more than {grace_seconds:g}s ({cond.get('message', '')});"
                " no node pool added a node for it"
            )
    return None


def pod_diagnosis(pod: Json) -> str | None:
    """Why a pod is not ready, for messages: a fatal container state, Unschedulable, or a waiting reason."""
    if (failure := pod_failure(pod)) is not None:
        return failure
    cond = _condition(pod, "PodScheduled")
    if cond and cond.get("status") == "False":
        return f"{cond.get('reason') or 'not scheduled'}: {cond.get('message', '')}".rstrip(": ")
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"container {c.get('name')}: {waiting['reason']}"
    return None


# Seldon v1's description when a Deployment's progressDeadlineSeconds passed without it becoming available.
SELDON_PROGRESS_FAILED = "no longer progressing"


def pod_ready(pod: Json) -> bool:
    cond = _condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def seldon_verdict(
    sdep: Json | None,
    pods: list[Json],
    events: list[Json] | None = None,
    *,
    now: datetime | None = None,
    unschedulable_grace_seconds: float | None = None,
) -> Verdict:
    """Available → success. Fails on any live pod of the deployment that is crash-looping, cannot pull its image,
    has a bad container config, or is unschedulable with no pool able to grow; and on ``state: Failed`` — except
    when Failed only says the progress deadline passed while pods are still starting without a failure (a
    scale-from-zero GPU node plus an image pull can take longer than Kubernetes' default 600 s): that stays
    pending until the wait's own deadline.

    Pods are checked before ``Available`` so that a rollout whose new pods crash is reported even while the
    previous pods keep the deployment available. Pods being deleted are ignored.
    """
    if sdep is None:
        return Verdict("pending", "SeldonDeployment not found yet")
    what = describe(sdep)
    status = sdep.get("status") or {}
    state = status.get("state") or "Creating"
    details = {"state": state, "sdep": sdep["metadata"]["name"], "sdep_uid": sdep["metadata"].get("uid", "")}
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    for pod in sorted(live, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        if (failure := pod_failure(pod)) is not None:
            return Verdict("error", f"{what}: pod {name} {failure}", {**details, "pod": name})
        if (why := pod_unschedulable(pod, events or [], now, unschedulable_grace_seconds)) is not None:
            return Verdict("error", f"{what}: pod {name} {why}", {**details, "pod": name})
    if state == "Failed":
        why = [
            f"pod {p['metadata']['name']} {d}"
            for p in sorted(live, key=lambda p: p["metadata"]["name"])
            if (d := pod_diagnosis(p))
        ]
        description = status.get("description") or ""
        if live and (not description or SELDON_PROGRESS_FAILED in description):
            # The Deployment's progress deadline passed, but its pods are still on their way (a node being
            # added for them, an image being pulled, a model loading) and none is failing: not terminal — the
            # wait's own deadline decides. Seldon leaves Failed once they are ready (pods already ready: its
            # status is catching up).
            starting = sorted(p["metadata"]["name"] for p in live if not pod_ready(p))
            return Verdict(
                "pending",
                f"{what} state Failed ({description or 'no description'}) while {len(starting)} of {len(live)}"
                f" pod(s) are still starting{' (' + '; '.join(why[:3]) + ')' if why else ''}; waiting for them",
                {**details, "starting_pods": starting},
            )
        return Verdict(
            "error",
            f"{what} state Failed: {description or 'no description'}{' (' + '; '.join(why[:3]) + ')' if why else ''}",
            details,
        )
    if state == "Available":
        details.update(replicas=status.get("replicas"), address=(status.get("address") or {}).get("url", ""))
        return Verdict("success", f"{what} is Available", details)
    return Verdict(
        "pending", f"{what} state {state}{': ' + status['description'] if status.get('description') else ''}", details
    )


# --- Ingress ----------------------------------------------------------------------------------------------------


def ingress_address(ing: Json) -> tuple[str, int | None] | None:
    """``status.loadBalancer.ingress[0]`` → (ip or hostname, port if the controller reports one)."""
    entries = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not entries:
        return None
    first = entries[0]
    address = first.get("ip") or first.get("hostname")
    if not address:
        return None
    ports = [p.get("port") for p in first.get("ports") or [] if p.get("port") and not p.get("error")]
    return address, (int(ports[0]) if ports else None)


def ingress_verdict(ing: Json | None) -> Verdict:
    if ing is None:
        return Verdict("pending", "Ingress not found yet")
    what = describe(ing)
    found = ingress_address(ing)
    if found is None:
        return Verdict("pending", f"{what} has no address yet")
    address, port = found
    return Verdict(
        "success",
        f"{what} has address {address}{':' + str(port) if port else ''}",
        {
            "address": address,
            "port": port,
            "ingress": ing["metadata"]["name"],
            "ingress_uid": ing["metadata"].get("uid", ""),
        },
    )


SELDON_PREDICT_PATH = "/api/v1.0/predictions"


def predict_url(
    address: str,
    port: int | None = None,
    path_prefix: str = "/",
    scheme: str = "http",
    api_path: str = SELDON_PREDICT_PATH,
) -> str:
    """``http://<address>[:port]<prefix>/api/v1.0/predictions`` (Seldon protocol); IPv6 literals bracketed."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") and address.count(":") > 1 else address
    default = 443 if scheme == "https" else 80
    netloc = f"{host}:{port}" if port and port != default and ":" not in host.rsplit("]", 1)[-1] else host
    prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
    return f"{scheme}://{netloc}{prefix}{api_path}"
