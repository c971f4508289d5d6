"""OpenAPI v3 component schemas of the served kinds, for ``kubectl explain`` and kubectl's client-side validation.

Built-in kinds: generated from the official Python client's models (kubernetes-client/python, pinned in the lock,
is itself generated from the apiserver's OpenAPI spec): each model's ``openapi_types`` and ``attribute_map`` give
the fields, their JSON names and types, its setters' docstrings the field descriptions. Schemas are named like the
apiserver's (``io.k8s.api.apps.v1.DeploymentSpec``, ``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``), objects
are referenced with ``allOf: [{$ref}]`` and every top-level kind carries ``x-kubernetes-group-version-kind``, as
in the apiserver's ``/openapi/v3`` documents. Custom resources: their CRD version's ``openAPIV3Schema``.
The daemon does not import the client (a heavy import that would stall the API's event loop): the models'
fields are extracted once into ``openapi_models.json.gz`` beside this module (``python -m
ack_sandbox.k8s.openapi_schemas`` regenerates it; a test checks it matches the client in the lock).
What the models do not carry is left out: ``required`` lists, enums, int32/int64 formats, and a field typed
``object`` (IntOrString, Quantity, RawExtension) accepts any value.
"""

from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from ack_sandbox.k8s.kinds import ResourceType

MODELS_FILE = Path(__file__).with_name("openapi_models.json.gz")
Table = dict[str, dict[str, list[str]]]  # model class -> JSON field -> [client type, description]

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


def class_names(rt: ResourceType) -> tuple[str, ...]:
    """The client's model class names a kind may have (``V1Deployment``, ``CoreV1Event``, ``EventsV1Event``)."""
    ver = rt.version[:1].upper() + rt.version[1:]
    prefix = "".join(p.title() for p in rt.group.split(".")[:1]) if rt.group else "Core"
    return (f"{ver}{rt.kind}", f"{prefix}{ver}{rt.kind}")


def _short(cls_name: str) -> str:
    m = _VERSIONED.match(cls_name)
    return m.group(1) if m else cls_name


def _inner(typ: str) -> str:
    while m := (_LIST.match(typ) or _DICT.match(typ)):
        typ = next(g for g in m.groups() if g)
    return typ


def generate(kind_types: list[ResourceType]) -> Table:
    """The fields of every client model reachable from the kinds (imports the client: build time only)."""
    from kubernetes.client import models

    table: Table = {}

    def walk(cls: Any) -> None:
        if cls.__name__ in table:
            return
        fields: dict[str, list[str]] = {}
        table[cls.__name__] = fields
        for attr, typ in cls.openapi_types.items():
            doc = getattr(getattr(getattr(cls, attr, None), "fset", None), "__doc__", None) or ""
            m = _DOC.match(doc)
            fields[cls.attribute_map.get(attr, attr)] = [typ, " ".join(m.group(1).split()) if m else ""]
            inner = getattr(models, _inner(typ), None)
            if isinstance(inner, type) and hasattr(inner, "openapi_types"):
                walk(inner)

    for rt in kind_types:
        cls = next((getattr(models, n) for n in class_names(rt) if hasattr(models, n)), None)
        if cls is not None:
            walk(cls)
    return dict(sorted(table.items()))


@lru_cache(maxsize=1)
def table() -> Table:
    data: Table = json.loads(gzip.decompress(MODELS_FILE.read_bytes()))
    return data


def write(data: Table) -> None:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    MODELS_FILE.write_bytes(gzip.compress(raw, mtime=0))


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
        if typ not in table():
            return {}
        return {"allOf": [{"$ref": "#/components/schemas/" + self.add(typ)}]}

    def add(self, cls_name: str) -> str:
        name = self.name_of(cls_name)
        if name in self.schemas:
            return name
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        self.schemas[name] = schema
        for field, (typ, desc) in table()[cls_name].items():
            prop = self.type_schema(typ)
            if desc:
                prop["description"] = desc
            schema["properties"][field] = prop
        return name


@lru_cache(maxsize=64)
def _builtin(group: str, version: str, kinds: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    from ack_sandbox.k8s.kinds import ResourceType as RT

    b = _Builder(group, version)
    for kind, plural in kinds:
        cls = next((n for n in class_names(RT(group, version, kind, plural)) if n in table()), None)
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


if __name__ == "__main__":
    from ack_sandbox.k8s.registry import Registry

    write(generate([rt for rt in Registry().all() if not rt.crd]))
    print(f"wrote {MODELS_FILE} ({len(table())} models)")
