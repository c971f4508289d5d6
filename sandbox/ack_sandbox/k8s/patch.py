"""Patch types the apiserver accepts: JSON merge (RFC 7386), strategic merge (built-in kinds only) and
JSON patch (RFC 6902, via the ``jsonpatch`` library).

Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch: lists with a ``patchMergeKey`` merge by
key, ``finalizers`` merge as a set, other lists are replaced; directives ``$patch`` (replace/delete/merge),
``$retainKeys``, ``$setElementOrder/<list>`` and ``$deleteFromPrimitiveList/<list>``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from ack_sandbox.k8s.errors import ApiError, bad_request

# patchMergeKey by field name (k8s.io/api types' struct tags). "ports" depends on the parent (see merge_key).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "taints": "key",
    "addresses": "type",
    "secrets": "name",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
}
SET_LISTS = frozenset({"finalizers"})  # patchStrategy:"merge" on a list of strings


def merge_key(path: tuple[str, ...], field: str) -> str | None:
    if field == "ports":
        if any(p in ("containers", "initContainers", "ephemeralContainers") for p in path):
            return "containerPort"
        if path and path[-1] == "spec" and "template" not in path:
            return "port"  # ServiceSpec.ports
        return None  # EndpointSubset/EndpointSlice ports are atomic
    if field == "addresses" and "status" not in path:
        return None  # only NodeStatus.addresses is keyed
    return MERGE_KEYS.get(field)


def json_merge(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge(result.get(k), v)
    return result


def strategic_merge(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = dict(target)
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            result[field] = [x for x in result.get(field) or [] if x not in v]
            continue
        if v is None:
            result.pop(k, None)
            continue
        cur = result.get(k)
        if isinstance(v, list):
            result[k] = _merge_list(cur if isinstance(cur, list) else [], v, path, k)
        elif isinstance(v, dict):
            merged = strategic_merge(cur, v, path + (k,))
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        else:
            result[k] = v
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    for k, order in patch.items():
        if k.startswith("$setElementOrder/") and isinstance(result.get(k.split("/", 1)[1]), list):
            result[k.split("/", 1)[1]] = _reorder(
                result[k.split("/", 1)[1]], order, merge_key(path, k.split("/", 1)[1])
            )
    return result


def _merge_list(cur: list[Any], patch: list[Any], path: tuple[str, ...], field: str) -> list[Any]:
    key = merge_key(path, field)
    if field in SET_LISTS and all(not isinstance(x, (dict, list)) for x in patch):
        out = list(cur)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    if key is None:
        if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
            return [x for x in patch if not (isinstance(x, dict) and "$patch" in x)]
        return copy.deepcopy(patch)
    out = [copy.deepcopy(x) for x in cur]
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"unable to find api field in struct for the list {field!r}: items must be objects")
        if item.get("$patch") == "replace":
            return [x for x in patch if not (isinstance(x, dict) and "$patch" in x)]
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item, path + (field,)))
        else:
            out[idx] = strategic_merge(out[idx], item, path + (field,))
    return out


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else json.dumps(x, sort_keys=True)

    rank = {ident(o): i for i, o in enumerate(order)}
    return sorted(items, key=lambda x: rank.get(ident(x), len(rank)))


def apply_json_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        return jsonpatch.JsonPatch(ops).apply(doc)
    except jsonpatch.JsonPatchTestFailed as exc:
        # apiserver: errors.NewInvalid-like 422 for a failed "test" (staging/.../handlers/patch.go)
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
