"""``/openapi/v2``: the built-in kinds' schemas as a Swagger 2.0 document, in gnostic protobuf or JSON.

kubectl still reads v2 in two places: the client-side validation of ``kind: List`` items (``kubectl apply -f``
of a List: each item is checked against the v2 model its ``x-kubernetes-group-version-kind`` names; a kind it
cannot find is not checked) and client-side ``apply``'s strategic merge patch, which takes the lists' merge
keys from the v2 model when the v3 document offers no strategic-merge PATCH body (the sandbox's does not).
It asks for ``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` (the answer's Content-Type is
``...spec.v2.v1.0+protobuf``, kube-openapi ``handler``'s, which Go's mime parser accepts) and parses the body as
gnostic's ``openapi.v2.Document`` (``OpenAPIv2.proto``, compiled into ``k8s_descriptors.pb.gz``).

The definitions are the v3 components (``openapi_schemas``, from the official client's models) with v2
``$ref``s, plus the ``x-kubernetes-patch-merge-key`` / ``-patch-strategy`` / ``-list-type`` /
``-list-map-keys`` extensions of the apiserver's own 1.20 spec (``k8s_patch_meta.json.gz``, vendored by
``sandbox/tools/vendor_k8s_protos.py``), so a client-side apply merges lists by the same keys as against a
cluster. Custom resources are left out (their items in a List are not validated client-side, and apply uses
JSON merge patches for them anyway).
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

import yaml

from ack_sandbox.k8s import openapi_schemas, protobuf
from ack_sandbox.k8s.registry import Registry

# What kubectl asks for, and what kube-openapi's handler answers with (Go's mime parser refuses the "@").
ACCEPT_PROTOBUF = ("com.github.proto-openapi.spec.v2@v1.0+protobuf", "com.github.proto-openapi.spec.v2.v1.0+protobuf")
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
PATCH_META_FILE = Path(__file__).with_name("k8s_patch_meta.json.gz")
_V3_REF = "#/components/schemas/"


@functools.cache
def _patch_meta() -> dict[str, dict[str, dict[str, Any]]]:
    return json.loads(gzip.decompress(PATCH_META_FILE.read_bytes()))


def _key(registry: Registry) -> tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]:
    gvs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for rt in registry.all():
        if not rt.crd:
            gvs.setdefault((rt.group, rt.version), []).append((rt.kind, rt.plural))
    return tuple((g, v, tuple(sorted(kinds))) for (g, v), kinds in sorted(gvs.items()))


def document(registry: Registry) -> dict[str, Any]:
    return _document(_key(registry))


def encoded(registry: Registry) -> bytes:
    return _encoded(_key(registry))


@functools.lru_cache(maxsize=4)
def _document(key: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]) -> dict[str, Any]:
    from ack_sandbox.k8s.kinds import ResourceType

    definitions: dict[str, Any] = {}
    for group, version, kinds in key:
        rts = [ResourceType(group, version, kind, plural) for kind, plural in kinds]
        for name, schema in openapi_schemas.schemas(rts, {}).items():
            definitions.setdefault(name, _v2(schema))
    meta = _patch_meta()
    for name, schema in definitions.items():
        short = name.rsplit(".", 1)[1]
        # The sandbox names a group's copy of a core type after the group (io.k8s.api.apps.v1.Container).
        found = meta.get(name) or meta.get(f"io.k8s.api.core.v1.{short}") or {}
        for prop, ext in found.items():
            if prop in schema.get("properties", {}):
                schema["properties"][prop].update(ext)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.32.1-aliyun.1"},
        "paths": {},
        "definitions": definitions,
    }


def _v2(schema: Any) -> Any:
    """v3 → v2: ``allOf: [{$ref}]`` (v3's way of a described reference) becomes the bare v2 ``$ref``."""
    if isinstance(schema, list):
        return [_v2(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
        return {"$ref": "#/definitions/" + all_of[0]["$ref"].removeprefix(_V3_REF)}
    if "$ref" in schema:
        return {"$ref": "#/definitions/" + schema["$ref"].removeprefix(_V3_REF)}
    out = {}
    for k, v in schema.items():
        if k == "properties":
            out[k] = {name: _v2(p) for name, p in v.items()}
        elif k in ("items", "additionalProperties", "allOf"):
            out[k] = _v2(v)
        else:
            out[k] = v
    return out


@functools.lru_cache(maxsize=4)
def _encoded(key: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]) -> bytes:
    doc_cls = protobuf.pool_message("openapi.v2.Document")
    src = _document(key)
    doc: Any = doc_cls(swagger=src["swagger"])
    doc.info.title, doc.info.version = src["info"]["title"], src["info"]["version"]
    doc.paths.SetInParent()
    for name, schema in sorted(src["definitions"].items()):
        _fill(doc.definitions.additional_properties.add(name=name).value, schema)
    return doc.SerializeToString()


def _fill(pb: Any, schema: dict[str, Any]) -> None:
    """One gnostic ``Schema`` message from its JSON form (the fields kube-openapi's proto models read)."""
    if "$ref" in schema:
        pb._ref = schema["$ref"]
        return
    for field in ("description", "format", "title"):
        if field in schema:
            setattr(pb, field, schema[field])
    if schema.get("type"):
        pb.type.value.append(schema["type"])
    if isinstance(schema.get("items"), dict):
        _fill(pb.items.schema.add(), schema["items"])
    for name, prop in (schema.get("properties") or {}).items():
        _fill(pb.properties.additional_properties.add(name=name).value, prop)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        _fill(pb.additional_properties.schema, extra)
    elif isinstance(extra, bool):
        pb.additional_properties.boolean = extra
    pb.required.extend(schema.get("required") or [])
    for key, value in schema.items():
        if key.startswith("x-"):
            pb.vendor_extension.add(name=key).value.yaml = yaml.safe_dump(value, default_flow_style=False)
