"""A minimal OpenAPI v3 surface: what kubectl 1.32 needs to validate and apply.

``kubectl apply/create/replace`` (``--validate=strict``, the default) first asks whether the server validates
fields itself: cli-runtime's ``queryParamVerifierV3`` fetches ``/openapi/v3`` and the group-version document,
finds the PATCH operation tagged with ``x-kubernetes-group-version-kind`` and looks for the ``fieldValidation``
path parameter. With it, kubectl sends ``fieldValidation=Strict`` and skips client-side schema validation;
without any OpenAPI it fails with "failed to download openapi". ``components.schemas`` holds the kinds' schemas
(``openapi_schemas``: from the official client's models, CRDs' own ``openAPIV3Schema``) for ``kubectl explain``
and the client-side validation of ``kind: List`` items. ``/openapi/v2`` is ``openapi_v2``'s (List validation and
client-side apply's merge keys).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ack_sandbox.k8s import openapi_schemas
from ack_sandbox.k8s.registry import Registry

_COMMON = ["pretty", "dryRun", "fieldManager", "fieldValidation"]


def _param(name: str, where: str = "query") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "schema": {"type": "string", "uniqueItems": True},
        **({"required": True} if where == "path" else {}),
    }


def _gv_key(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


_CACHE: dict[Any, tuple[dict[str, Any], str]] = {}


def _key(registry: Registry, group: str, version: str, crds: dict[tuple[str, str], dict[str, Any]]) -> Any:
    rts = sorted(
        (rt.kind, rt.plural, rt.namespaced, rt.subresources)
        for rt in registry.all()
        if rt.group == group and rt.version == version
    )
    revs = tuple(sorted((k, str(v["metadata"].get("resourceVersion"))) for k, v in crds.items() if k[0] == group))
    return (group, version, tuple(rts), revs)


def cached(
    registry: Registry, group: str, version: str, crds: dict[tuple[str, str], dict[str, Any]] | None = None
) -> tuple[dict[str, Any], str] | None:
    """(document, hash) of a group-version, rebuilt only when its kinds (or CRDs) change."""
    crds = crds or {}
    key = _key(registry, group, version, crds)
    hit = _CACHE.get(key)
    if hit is None:
        doc = gv_document(registry, group, version, crds)
        if doc is None:
            return None
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
        if len(_CACHE) > 256:
            _CACHE.clear()
        hit = _CACHE[key] = (doc, digest)
    return hit


def gv_document(
    registry: Registry, group: str, version: str, crds: dict[tuple[str, str], dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    rts = [rt for rt in registry.all() if rt.group == group and rt.version == version]
    if not rts:
        return None
    paths: dict[str, Any] = {}
    prefix = "/" + _gv_key(group, version)
    for rt in rts:
        gvk = {"group": group, "version": version, "kind": rt.kind}
        ext = {"x-kubernetes-group-version-kind": gvk}
        base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
        ns_params = [_param("namespace", "path")] if rt.namespaced else []
        ok = {"responses": {"200": {"description": "OK"}}}
        paths[base] = {
            "get": {**ok, "x-kubernetes-action": "list", **ext, "operationId": f"list{rt.kind}"},
            "post": {
                **ok,
                "x-kubernetes-action": "post",
                **ext,
                "operationId": f"create{rt.kind}",
                "parameters": [_param(p) for p in _COMMON],
            },
            "parameters": ns_params,
        }
        item_params = [_param("name", "path")] + ns_params
        # kubectl reads the PATCH operation's own parameters (cli-runtime supportsQueryParamV3).
        paths[f"{base}/{{name}}"] = {
            "get": {**ok, "x-kubernetes-action": "get", **ext, "operationId": f"read{rt.kind}"},
            "put": {
                **ok,
                "x-kubernetes-action": "put",
                **ext,
                "operationId": f"replace{rt.kind}",
                "parameters": [_param(p) for p in _COMMON],
            },
            "patch": {
                **ok,
                "x-kubernetes-action": "patch",
                **ext,
                "operationId": f"patch{rt.kind}",
                "parameters": [_param(p) for p in _COMMON + ["force"]],
            },
            "delete": {**ok, "x-kubernetes-action": "delete", **ext, "operationId": f"delete{rt.kind}"},
            "parameters": item_params,
        }
        for sub in rt.subresources:
            if sub in ("status", "scale"):
                paths[f"{base}/{{name}}/{sub}"] = {
                    "get": {**ok, "x-kubernetes-action": "get", **ext},
                    "patch": {
                        **ok,
                        "x-kubernetes-action": "patch",
                        **ext,
                        "parameters": [_param(p) for p in _COMMON + ["force"]],
                    },
                    "put": {**ok, "x-kubernetes-action": "put", **ext, "parameters": [_param(p) for p in _COMMON]},
                    "parameters": item_params,
                }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.1-aliyun.1"},
        "paths": paths,
        "components": {"schemas": openapi_schemas.schemas(rts, crds or {})},
    }


def root(registry: Registry, crds: dict[tuple[str, str], dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group, versions, _ in registry.groups():
        for v in versions:
            hit = cached(registry, group, v, crds)
            if hit is not None:
                out[_gv_key(group, v)] = {"serverRelativeURL": f"/openapi/v3/{_gv_key(group, v)}?hash={hit[1]}"}
    return {"paths": out}
