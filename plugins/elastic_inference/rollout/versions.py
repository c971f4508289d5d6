"""Which model version each replica really serves: the model server's status API on every ready pod.

TF Serving ``GET /v1/models/<name>`` on the pod's REST port (the backend says which port) answers the versions it
has AVAILABLE. The worker reaches pod IPs directly, as it does inside the cluster's VPC on ACK (Terway / Flannel
pod IPs are routable from the VPC). A pod that does not answer is reported with its error: a check that counts
it can never pass by not asking.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from elastic_inference.k8s_objects import Json, ResourceRef
from elastic_inference.serving.base import ServedVersion, ServingBackend, available_versions

if TYPE_CHECKING:
    from elastic_inference.hooks.kubernetes import KubeHook

POD = ResourceRef("v1", "Pod")


def _ready(pod: Json) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def served_versions(
    hook: KubeHook,
    backend: ServingBackend,
    namespace: str,
    pod_selector: str,
    model_name: str,
    *,
    timeout: float = 5.0,
    pods: Iterable[Json] | None = None,
) -> list[ServedVersion]:
    """Every ready pod of ``pod_selector`` and the versions its model server has AVAILABLE."""
    import requests

    if pods is None:
        pods = hook.list(POD, namespace, label_selector=pod_selector).get("items") or []
    out = []
    for pod in sorted((p for p in pods if _ready(p)), key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        endpoint = backend.model_status_endpoint(pod)
        if endpoint is None:
            out.append(ServedVersion(name, (), "no model server status endpoint (pod IP or REST port unknown)"))
            continue
        ip, port = endpoint
        url = f"http://{ip}:{port}/v1/models/{model_name}"
        try:
            resp = requests.get(url, timeout=timeout)
            if resp.status_code != 200:
                out.append(ServedVersion(name, (), f"GET {url}: HTTP {resp.status_code} {resp.text[:120]}"))
                continue
            out.append(ServedVersion(name, available_versions(resp.json())))
        except (requests.RequestException, ValueError) as exc:
            out.append(ServedVersion(name, (), f"GET {url}: {type(exc).__name__}: {str(exc)[:120]}"))
    return out


def version_problems(served: list[ServedVersion], version: int, what: str = "") -> list[str]:
    """Why ``served`` is not "every replica serves exactly ``version``" (empty: it is)."""
    label = f"{what}: " if what else ""
    if not served:
        return [f"{label}no ready replica to ask which version it serves"]
    wrong = [s for s in served if not s.serves_only(version)]
    return [
        f"{label}pod {s.pod} " + (s.error if s.error else f"serves versions {list(s.versions)}, not [{version}]")
        for s in wrong
    ]


def summary(served: list[ServedVersion]) -> dict[str, Any]:
    """``{"pods": n, "by_version": {"2": 3}, "errors": [...]}`` for XCom and the report."""
    by: dict[str, int] = {}
    for s in served:
        key = ",".join(map(str, s.versions)) or "none"
        by[key] = by.get(key, 0) + 1
    return {"pods": len(served), "by_version": by, "errors": [s.to_dict() for s in served if s.error]}
