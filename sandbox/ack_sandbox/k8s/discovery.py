"""Discovery documents (/version, /api, /apis, group and group-version resource lists).

Served in the legacy (unaggregated) format: kubectl 1.32 asks for aggregated discovery
(``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``) first and falls back to these
documents when the response's content type is plain ``application/json`` (client-go discovery,
``aggregated_discovery.go``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ack_sandbox.k8s.kinds import ResourceType
from ack_sandbox.k8s.registry import Registry

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.1-aliyun.1",
    "gitCommit": "0b7f6a1c3a0b4fa5c7ab8d6c8b4f5f1de6a1c8b2",
    "gitTreeState": "clean",
    "buildDate": "2025-02-10T08:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "log": ["get"],
    "finalize": ["update"],
    "exec": ["create", "get"],
    "attach": ["create", "get"],
    "portforward": ["create", "get"],
}


@dataclass
class AggregatedGroup:
    """An API group served by another module (like an APIService backed by an extension server)."""

    group: str
    version: str
    resources: list[dict[str, Any]]
    handler: Any  # async (request, rest_path_parts) -> aiohttp response
    extra: dict[str, Any] = field(default_factory=dict)


def _hash(rt: ResourceType) -> str:
    return hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).hexdigest()[:11]


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    rts = [rt for rt in registry.all() if rt.group == group and rt.version == version]
    if not rts:
        return None
    resources: list[dict[str, Any]] = []
    for rt in sorted(rts, key=lambda r: r.plural):
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
            "storageVersionHash": _hash(rt),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            s: dict[str, Any] = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": _SUB_VERBS[sub],
            }
            if sub == "scale":
                s.update(group="autoscaling", version="v1", kind="Scale")
            if sub == "log":
                s["kind"] = "Pod"
            if sub in ("exec", "attach", "portforward"):
                s["kind"] = {"exec": "PodExecOptions", "attach": "PodAttachOptions"}.get(sub, "PodPortForwardOptions")
            resources.append(s)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _group_doc(name: str, versions: list[str], preferred: str) -> dict[str, Any]:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "name": name,
        "versions": vs,
        "preferredVersion": {"groupVersion": f"{name}/{preferred}", "version": preferred},
    }


def groups(registry: Registry, aggregated: dict[str, AggregatedGroup]) -> list[dict[str, Any]]:
    out = [_group_doc(g, vs, pref) for g, vs, pref in registry.groups() if g]
    for agg in aggregated.values():
        out.append(_group_doc(agg.group, [agg.version], agg.version))
    return out


def api_group_list(registry: Registry, aggregated: dict[str, AggregatedGroup]) -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups(registry, aggregated)}


def api_group(registry: Registry, aggregated: dict[str, AggregatedGroup], name: str) -> dict[str, Any] | None:
    doc = next((g for g in groups(registry, aggregated) if g["name"] == name), None)
    return None if doc is None else {"kind": "APIGroup", "apiVersion": "v1", **doc}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }
