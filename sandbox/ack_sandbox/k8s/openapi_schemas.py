"""OpenAPI v3 component schemas of the served kinds, for ``kubectl explain`` and kubectl's client-side validation.

Built-in kinds: generated from the official Python client's models (kubernetes-client/python, pinned in the lock,
is itself generated from the apiserver's OpenAPI spec): each model's ``openapi_types`` and ``attribute_map`` give
the fields, their JSON names and types, its setters' docstrings the field descriptions. Schemas are named like the
apiserver's (``io.k8s.api.apps.v1.DeploymentSpec``, ``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``), objects
are referenced with ``allOf: [{$ref}]`` and every top-level kind carries ``x-kubernetes-group-version-kind``, as
in the apiserver's ``/openapi/v3`` documents. Custom resources: their CRD version's ``openAPIV3Schema``.
What the models do not carry is left out: ``required`` lists, enums, int32/int64 formats, and a field typed
``object`` (IntOrString, Quantity, RawExtension) accepts any value.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from kubernetes.client import models as _models

from ack_sandbox.k8s.kinds import ResourceType

_PRIMS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "object": {},
}
_META = {
    "ObjectMeta",
    "ListMeta",
    "LabelSelector",
    "LabelSelectorRequirement",
    "OwnerReference",
    "ManagedFieldsEntry",
    "Condition",
    "Status",
    "StatusDetails",
    "StatusCause",
}
_VERSIONED = re.compile(r"^(?:[A-Z][a-z]+)?V\d+(?:(?:alpha|beta)\d+)?([A-Z].*)$")
_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\[str, (.+)\]$|^dict\(str, (.+)\)$")
_DOC = re.compile(r"^\s*Sets the \w+ of this \w+\.\s*(.*?)\s*(?:# noqa: E501)?\s*:param", re.S)


def model_class(rt: ResourceType) -> type | None:
    ver = rt.version[:1].upper() + rt.version[1:]
    prefix = "".join(p.title() for p in rt.group.split(".")[:1]) if rt.group else "Core"
    for name in (f"{ver}{rt.kind}", f"{prefix}{ver}{rt.kind}"):
        cls = getattr(_models, name, None)
        if isinstance(cls, type) and hasattr(cls, "openapi_types"):
            return cls
    return None


def _short(cls_name: str) -> str:
    m = _VERSIONED.match(cls_name)
    return m.group(1) if m else cls_name


def _description(cls: type, attr: str) -> str:
    prop = getattr(cls, attr, None)
    doc = getattr(getattr(prop, "fset", None), "__doc__", None) or ""
    m = _DOC.match(doc)
    return " ".join(m.group(1).split()) if m else ""


class _Builder:
    def __init__(self, group: str, version: str) -> None:
        self.pkg = f"io.k8s.api.{group.split('.')[0] if group else 'core'}.{version}"
        self.schemas: dict[str, Any] = {}

    def name_of(self, cls_name: str) -> str:
        short = _short(cls_name)
        if short in _META:
            return f"io.k8s.apimachinery.pkg.apis.meta.v1.{short}"
        return f"{self.pkg}.{short}"

    def type_schema(self, typ: str) -> dict[str, Any]:
        if typ in _PRIMS:
            return dict(_PRIMS[typ])
        if m := _LIST.match(typ):
            return {"type": "array", "items": self.type_schema(m.group(1))}
        if m := _DICT.match(typ):
            return {"type": "object", "additionalProperties": self.type_schema(m.group(1) or m.group(2))}
        cls = getattr(_models, typ, None)
        if cls is None:
            return {}
        return {"allOf": [{"$ref": "#/components/schemas/" + self.add(cls)}]}

    def add(self, cls: type) -> str:
        name = self.name_of(cls.__name__)
        if name in self.schemas:
            return name
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        self.schemas[name] = schema
        types: dict[str, str] = cls.openapi_types  # type: ignore[attr-defined]
        attrs: dict[str, str] = cls.attribute_map  # type: ignore[attr-defined]
        for attr, typ in types.items():
            prop = self.type_schema(typ)
            desc = _description(cls, attr)
            if desc:
                prop["description"] = desc
            schema["properties"][attrs.get(attr, attr)] = prop
        return name


@lru_cache(maxsize=64)
def _builtin(group: str, version: str, kinds: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    from ack_sandbox.k8s.kinds import ResourceType as RT

    b = _Builder(group, version)
    for kind, plural in kinds:
        cls = model_class(RT(group, version, kind, plural))
        if cls is None:
            continue
        name = b.add(cls)
        b.schemas[name]["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    return b.schemas


def schemas(rts: list[ResourceType], crds: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Component schemas of one group-version document; ``crds`` maps (group, plural) to the CRD object."""
    builtin = [rt for rt in rts if not rt.crd]
    out: dict[str, Any] = {}
    if builtin:
        kinds = tuple(sorted((rt.kind, rt.plural) for rt in builtin))
        out.update(_builtin(builtin[0].group, builtin[0].version, kinds))
    for rt in rts:
        crd = crds.get((rt.group, rt.plural)) if rt.crd else None
        if crd is None:
            continue
        ver = next((v for v in crd["spec"].get("versions") or [] if v.get("name") == rt.version), {})
        schema = dict(((ver.get("schema") or {}).get("openAPIV3Schema")) or {"type": "object"})
        schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
        rev = ".".join(reversed(rt.group.split(".")))
        out[f"{rev}.{rt.version}.{rt.kind}"] = schema
    return out
