"""Admission defaults, as the real apiserver's defaulters (pkg/apis/*/v1/defaults.go) and admission plugins set them.

Each function mutates a new object in place; ``alloc`` hands out cluster IPs and node ports.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any, Protocol


class Allocator(Protocol):
    def cluster_ip(self) -> str: ...
    def node_port(self) -> int: ...


def _container(c: dict[str, Any]) -> None:
    image = c.get("image", "")
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        vf = env.get("valueFrom", {}).get("fieldRef")
        if vf is not None:
            vf.setdefault("apiVersion", "v1")
    # Limits without requests: requests default to limits (pkg/apis/core/v1/defaults.go SetDefaults_Pod).
    res = c["resources"]
    if res.get("limits"):
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)


def pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        _container(c)
    for vol in spec.get("volumes") or []:
        for src in ("secret", "configMap"):
            if src in vol:
                vol[src].setdefault("defaultMode", 420)
        if "hostPath" in vol:
            vol["hostPath"].setdefault("type", "")
        if "emptyDir" in vol and vol["emptyDir"] is None:
            vol["emptyDir"] = {}


def pod(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    pod_spec(spec)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    # DefaultTolerationSeconds admission plugin.
    tol = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key for t in tol):
            tol.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", qos_class(spec))


def qos_class(spec: dict[str, Any]) -> str:
    reqs, lims, any_set = [], [], False
    for c in spec.get("containers") or []:
        r = c.get("resources") or {}
        reqs.append({k: v for k, v in (r.get("requests") or {}).items() if k in ("cpu", "memory")})
        lims.append({k: v for k, v in (r.get("limits") or {}).items() if k in ("cpu", "memory")})
        any_set = any_set or bool(reqs[-1]) or bool(lims[-1])
    if not any_set:
        return "BestEffort"
    if all(set(lim) == {"cpu", "memory"} and req == lim for req, lim in zip(reqs, lims)):
        return "Guaranteed"
    return "Burstable"


def _template(obj: dict[str, Any]) -> None:
    tmpl = obj.setdefault("spec", {}).setdefault("template", {})
    tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    pod_spec(tmpl.setdefault("spec", {}))


def deployment(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strat = spec.setdefault("strategy", {})
    strat.setdefault("type", "RollingUpdate")
    if strat["type"] == "RollingUpdate":
        ru = strat.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(obj)
    obj.setdefault("status", {})


def replicaset(obj: dict[str, Any], alloc: Allocator) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _template(obj)
    obj.setdefault("status", {}).setdefault("replicas", 0)


def service(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if not spec.get("clusterIP"):
            spec["clusterIP"] = alloc.cluster_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if spec["type"] != "ExternalName":
            port.setdefault("targetPort", port.get("port"))
        if spec["type"] in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
            port["nodePort"] = alloc.node_port()
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def namespace(obj: dict[str, Any], alloc: Allocator) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")
    # NamespaceDefaultLabelName feature (GA 1.22): every namespace carries its own name as a label.
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def pvc(obj: dict[str, Any], alloc: Allocator) -> None:
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def pv(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def secret(obj: dict[str, Any], alloc: Allocator) -> None:
    """``stringData`` is write-only: merged into ``data`` (base64, stringData wins) and never stored
    (pkg/apis/core/v1/conversion.go Convert_v1_Secret_To_core_Secret)."""
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.get("data") or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def hpa(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ]
    behavior = spec.get("behavior")
    if behavior is not None:  # autoscaling/v2 SetDefaults_HorizontalPodAutoscalerBehavior
        up = behavior.setdefault("scaleUp", {})
        up.setdefault("stabilizationWindowSeconds", 0)
        up.setdefault("selectPolicy", "Max")
        up.setdefault(
            "policies",
            [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}],
        )
        down = behavior.setdefault("scaleDown", {})
        down.setdefault("selectPolicy", "Max")
        down.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])
    obj.setdefault("status", {}).setdefault("currentReplicas", 0)
    obj["status"].setdefault("desiredReplicas", 0)


def ingress(obj: dict[str, Any], alloc: Allocator) -> None:
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def crd(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", names.get("kind", "") + "List")
    spec.setdefault("conversion", {"strategy": "None"})


class ServiceIPs:
    """Cluster IPs from ACK's default service CIDR (172.21.0.0/20) and node ports from 30000-32767."""

    def __init__(self, used_ips: set[str], used_ports: set[int], cidr: str = "172.21.0.0/20") -> None:
        self.net = ipaddress.ip_network(cidr)
        self.used_ips = used_ips
        self.used_ports = used_ports
        self._next_ip = 10
        self._next_port = 30000

    def cluster_ip(self) -> str:
        size = self.net.num_addresses
        for _ in range(size):
            ip = str(self.net.network_address + self._next_ip)
            self._next_ip = self._next_ip + 1 if self._next_ip + 2 < size else 10
            if ip not in self.used_ips:
                self.used_ips.add(ip)
                return ip
        raise RuntimeError("service CIDR exhausted")

    def node_port(self) -> int:
        for _ in range(2768):
            port = self._next_port
            self._next_port = port + 1 if port < 32767 else 30000
            if port not in self.used_ports:
                self.used_ports.add(port)
                return port
        raise RuntimeError("node ports exhausted")
