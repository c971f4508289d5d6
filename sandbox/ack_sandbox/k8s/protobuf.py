"""``application/vnd.kubernetes.protobuf`` request bodies → the JSON form the store handles.

kubectl's typed commands (``kubectl create configmap|secret|deployment|job|cronjob|rolebinding ...``,
``kubectl auth can-i|whoami``) send protobuf. The wire envelope is apimachinery's protobuf serializer
(``runtime/serializer/protobuf/protobuf.go``): the 4-byte magic ``k8s\\x00``, then a ``runtime.Unknown``
(typeMeta apiVersion/kind, raw = the object's own message, contentEncoding, contentType). Both messages are
decoded by Google's ``protobuf`` runtime over the descriptors in ``k8s_descriptors.pb.gz`` (compiled from the
Kubernetes 1.20 ``generated.proto`` files plus this project's messages for newer kinds, by
``sandbox/tools/vendor_k8s_protos.py``), then turned into the object's JSON form, which then goes through the
same path as a JSON body (validation, defaults, dryRun, fieldManager).

The JSON form is the one Go's ``encoding/json`` gives for the decoded struct: gogo-protobuf writes every
non-pointer field, even at its zero value, so zero scalars are dropped as ``omitempty`` drops them, except the
pointer fields in ``_POINTERS`` where a zero means something (``replicas: 0``, ``runAsUser: 0``); the
apimachinery types with a JSON form of their own (Time, MicroTime, Duration, IntOrString, Quantity,
RawExtension, FieldsV1, the ``[]string`` wrappers) are converted as their ``MarshalJSON`` does; bytes fields
(Secret data) become base64. A field the 1.20 descriptors do not know (a field added since, which a 1.32
server would read) is refused with 415 naming it, rather than dropped without a word; one at its zero value is
what gogo writes for an unset non-pointer field (kubectl's Job carries JobStatus.completedIndexes = "") and
is dropped, as omitempty would drop it.

``encode`` is the way back, for a client whose Accept takes protobuf alone (handlers' ``protobuf_responses``):
what the messages cannot carry raises ``NotEncodable``, answered 406.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, unknown_fields
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from ack_sandbox.k8s.errors import ApiError

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
DESCRIPTORS_FILE = Path(__file__).with_name("k8s_descriptors.pb.gz")
# The apiserver's scheme, as its "no kind is registered" errors name it (apimachinery runtime/scheme.go).
_SCHEME = "pkg/api/legacyscheme/scheme.go:30"
# Group versions newer than 1.20 whose messages are an older version's with the same field numbers
# (autoscaling/v2 is v2beta2 promoted in 1.23).
_ALIASES = {"k8s.io.api.autoscaling.v2": "k8s.io.api.autoscaling.v2beta2"}
_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
# Pointer fields (``*int32``, ``*bool``, ``*string`` in Go) whose zero value is kept: a nil pointer is not on the
# wire, so a zero there was set by the client.
_POINTERS = frozenset(
    {
        "k8s.io.api.apps.v1.DeploymentSpec.replicas",
        "k8s.io.api.apps.v1.ReplicaSetSpec.replicas",
        "k8s.io.api.apps.v1.StatefulSetSpec.replicas",
        "k8s.io.api.apps.v1.DeploymentSpec.revisionHistoryLimit",
        "k8s.io.api.apps.v1.DeploymentSpec.progressDeadlineSeconds",
        "k8s.io.api.core.v1.ReplicationControllerSpec.replicas",
        "k8s.io.api.batch.v1.JobSpec.parallelism",
        "k8s.io.api.batch.v1.JobSpec.completions",
        "k8s.io.api.batch.v1.JobSpec.activeDeadlineSeconds",
        "k8s.io.api.batch.v1.JobSpec.backoffLimit",
        "k8s.io.api.batch.v1.JobSpec.ttlSecondsAfterFinished",
        "k8s.io.api.batch.v1.JobSpec.manualSelector",
        "k8s.io.api.batch.v1.CronJobSpec.startingDeadlineSeconds",
        "k8s.io.api.batch.v1.CronJobSpec.suspend",
        "k8s.io.api.batch.v1.CronJobSpec.successfulJobsHistoryLimit",
        "k8s.io.api.batch.v1.CronJobSpec.failedJobsHistoryLimit",
        "k8s.io.api.core.v1.PodSpec.terminationGracePeriodSeconds",
        "k8s.io.api.core.v1.PodSpec.activeDeadlineSeconds",
        "k8s.io.api.core.v1.PodSpec.automountServiceAccountToken",
        "k8s.io.api.core.v1.PodSpec.enableServiceLinks",
        "k8s.io.api.core.v1.PodSecurityContext.runAsUser",
        "k8s.io.api.core.v1.PodSecurityContext.runAsGroup",
        "k8s.io.api.core.v1.PodSecurityContext.runAsNonRoot",
        "k8s.io.api.core.v1.PodSecurityContext.fsGroup",
        "k8s.io.api.core.v1.SecurityContext.runAsUser",
        "k8s.io.api.core.v1.SecurityContext.runAsGroup",
        "k8s.io.api.core.v1.SecurityContext.runAsNonRoot",
        "k8s.io.api.core.v1.SecurityContext.privileged",
        "k8s.io.api.core.v1.SecurityContext.readOnlyRootFilesystem",
        "k8s.io.api.core.v1.SecurityContext.allowPrivilegeEscalation",
        "k8s.io.api.core.v1.ConfigMap.immutable",
        "k8s.io.api.core.v1.Secret.immutable",
        "k8s.io.api.core.v1.ServiceAccount.automountServiceAccountToken",
        "k8s.io.api.core.v1.PersistentVolumeClaimSpec.storageClassName",
        "k8s.io.api.autoscaling.v1.HorizontalPodAutoscalerSpec.minReplicas",
        "k8s.io.api.autoscaling.v2beta2.HorizontalPodAutoscalerSpec.minReplicas",
        "k8s.io.api.networking.v1.IngressSpec.ingressClassName",
        _META + "DeleteOptions.gracePeriodSeconds",
        _META + "DeleteOptions.orphanDependents",
    }
)


# Go structs embedded with ``json:",inline"``: go-to-protobuf gives them a field of their own, JSON flattens them.
_INLINE = frozenset(
    {"localObjectReference", "handler", "volumeSource", "persistentVolumeSource", "ephemeralContainerCommon"}
    | {"ingressRuleValue"}
)


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(gzip.decompress(DESCRIPTORS_FILE.read_bytes()))
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:  # --include_imports orders dependencies first
        pool.Add(f)
    return pool


@functools.cache
def _message(full_name: str) -> type[Message] | None:
    try:
        desc = _pool().FindMessageTypeByName(full_name)
    except KeyError:
        return None
    return message_factory.GetMessageClass(desc)


def pool_message(full_name: str) -> type[Message]:
    """A message class of the descriptor set by full name (``openapi.v2.Document``)."""
    cls = _message(full_name)
    if cls is None:
        raise KeyError(full_name)
    return cls


def package(api_version: str) -> str:
    """The proto package of a group/version: ``apps/v1`` → ``k8s.io.api.apps.v1``, ``rbac.authorization.k8s.io/v1``
    → ``k8s.io.api.rbac.v1``, ``v1`` → ``k8s.io.api.core.v1`` (go-to-protobuf names them by the Go package)."""
    group, _, version = api_version.rpartition("/")
    name = f"k8s.io.api.{group.split('.', 1)[0] or 'core'}.{version}"
    return _ALIASES.get(name, name)


def message_class(api_version: str, kind: str) -> type[Message] | None:
    if kind in ("DeleteOptions", "Status") and api_version in ("v1", "meta.k8s.io/v1"):
        return _message(_META + kind)
    return _message(f"{package(api_version)}.{kind}")


def decode(data: bytes, api_version: str, kind: str) -> dict[str, Any]:
    """The object in a protobuf body, as JSON; ``api_version``/``kind`` are the endpoint's (the defaults when the
    envelope leaves them out). Errors are the apiserver's 400s (handlers/rest.go ``transformDecodeError``)."""
    if not data:
        raise _unrecognized(kind, "empty data", data)
    if len(data) < len(MAGIC) or not data.startswith(MAGIC):
        prefix = "[" + " ".join(str(b) for b in MAGIC) + "]"
        raise _unrecognized(
            kind, f"provided data does not appear to be a protobuf message, expected prefix {prefix}", data
        )
    if len(data) == len(MAGIC):
        raise _unrecognized(kind, "empty body", data)
    unknown_cls = _message("k8s.io.apimachinery.pkg.runtime.Unknown")
    assert unknown_cls is not None
    try:
        envelope: Any = unknown_cls.FromString(data[len(MAGIC) :])
    except DecodeError as exc:
        raise _unrecognized(kind, f"proto: {exc}", data) from None
    got_version = envelope.typeMeta.apiVersion or api_version
    got_kind = envelope.typeMeta.kind or kind
    version = got_version.rpartition("/")[2]
    cls = message_class(got_version, got_kind)
    if cls is None:
        raise _bad_request(
            f'{got_kind} in version "{version}" cannot be handled as a {kind}: '
            f'no kind "{got_kind}" is registered for version "{got_version}" in scheme "{_SCHEME}"'
        )
    try:
        msg = cls.FromString(envelope.raw)
    except DecodeError as exc:
        raise _bad_request(f'{got_kind} in version "{version}" cannot be handled as a {kind}: proto: {exc}') from None
    newer = _unknown_field(msg, "")
    if newer:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - {newer}: the sandbox decodes protobuf with the "
            "Kubernetes 1.20 definitions, which do not have this field; send it as application/json",
        )
    obj = to_json(msg)
    return {"apiVersion": got_version, "kind": got_kind, **obj}


def _unrecognized(kind: str, reason: str, body: bytes) -> ApiError:
    # handlers/rest.go summarizeData: the first 30 bytes, in hex unless the body starts with "{".
    head = body[:30]
    summary = "<empty>" if not body else (head.decode(errors="replace") if body[:1] == b"{" else head.hex())
    if len(body) > 30:
        summary += " ..."
    return _bad_request(f"the object provided is unrecognized (must be of type {kind}): {reason} ({summary})")


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _unknown_field(msg: Message, path: str) -> str | None:
    """The first field on the wire that the descriptors do not know, as "field N of Message at path"."""
    for unknown in unknown_fields.UnknownFieldSet(msg):
        # gogo writes a newer non-pointer field even when unset (JobStatus.completedIndexes = ""): a zero value
        # says nothing Go's omitempty would show, so only a field with content is refused.
        if unknown.data not in (0, b""):
            where = f" at {path}" if path else ""
            return f"field {unknown.field_number} of {msg.DESCRIPTOR.full_name}{where}"
    for fd, value in msg.ListFields():
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        sub = f"{path}.{fd.name}" if path else fd.name
        if _is_map(fd):
            values = list(value.values()) if fd.message_type.fields_by_name["value"].message_type else []
        else:
            values = list(value) if _repeated(fd) else [value]
        for i, v in enumerate(values):
            found = _unknown_field(v, f"{sub}[{i}]" if _repeated(fd) and not _is_map(fd) else sub)
            if found:
                return found
    return None


def to_json(msg: Message) -> Any:
    """A decoded message as Go's encoding/json gives the struct it stands for."""
    desc = msg.DESCRIPTOR
    special = _SPECIAL.get(desc.full_name)
    if special is not None:
        return special(msg)
    if desc.full_name.endswith(".ExtraValue") or desc.full_name == _META + "Verbs":
        return list(msg.items)  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if _is_map(fd):
            vfd = fd.message_type.fields_by_name["value"]
            out[fd.name] = {k: _value(vfd, v) for k, v in value.items()}
        elif _repeated(fd):
            out[fd.name] = [_value(fd, v) for v in value]
        else:
            if fd.type != FieldDescriptor.TYPE_MESSAGE and not value and f"{desc.full_name}.{fd.name}" not in _POINTERS:
                continue  # a zero non-pointer field: omitempty
            converted = _value(fd, value)
            if fd.name in _INLINE and isinstance(converted, dict):
                out.update(converted)
            elif converted is not None:
                out[fd.name] = converted
    return out


def _value(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def _repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated) if hasattr(fd, "is_repeated") else fd.label == FieldDescriptor.LABEL_REPEATED


def _is_map(fd: FieldDescriptor) -> bool:
    mt: Descriptor | None = fd.message_type
    return bool(mt is not None and mt.GetOptions().map_entry)


def _time(msg: Any) -> str | None:
    # metav1.Time.MarshalJSON: RFC3339 in UTC, whole seconds; the zero time is null.
    if not msg.seconds and not msg.nanos:
        return None
    return datetime.fromtimestamp(msg.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(msg: Any) -> str | None:
    # metav1.MicroTime.MarshalJSON: RFC3339 with microseconds ("2006-01-02T15:04:05.000000Z07:00").
    if not msg.seconds and not msg.nanos:
        return None
    stamp = datetime.fromtimestamp(msg.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{msg.nanos // 1000:06d}Z"


def _duration(msg: Any) -> str:
    """metav1.Duration.MarshalJSON: Go's time.Duration.String() ("1h2m3s", "1.5s", "0s")."""
    ns = int(msg.duration)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _trim(rest / 1e9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


def _raw_json(msg: Any) -> Any:
    # runtime.RawExtension / metav1.FieldsV1: the raw bytes are the JSON itself.
    raw = bytes(msg.raw if hasattr(msg, "raw") else msg.Raw)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise _bad_request(f"invalid JSON in an embedded object: {raw[:30]!r}") from None


_SPECIAL: dict[str, Any] = {
    _META + "Time": _time,
    _META + "MicroTime": _micro_time,
    _META + "Duration": _duration,
    _META + "FieldsV1": _raw_json,
    "k8s.io.apimachinery.pkg.runtime.RawExtension": _raw_json,
    "k8s.io.apimachinery.pkg.api.resource.Quantity": lambda m: m.string,
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": lambda m: m.strVal if m.type == 1 else m.intVal,
}


# ---- encoding: the JSON form → protobuf, for a client whose Accept takes protobuf only ------------------------


class NotEncodable(Exception):
    """The object has something the 1.20 descriptors cannot carry (a newer kind or field)."""


def wants_protobuf_only(accept: str) -> bool:
    """Accept names protobuf and nothing the sandbox answers otherwise (JSON, YAML, */*): client-go's
    ``AcceptContentTypes = application/vnd.kubernetes.protobuf`` alone."""
    types = [t.split(";", 1)[0].strip() for t in accept.split(",") if t.strip()]
    return MEDIA_TYPE in types and not any(
        t in ("*/*", "application/*", "application/json", "application/yaml") for t in types
    )


def encode(obj: dict[str, Any]) -> bytes:
    """An object (or list, or Status) in the apiserver's protobuf wire form: magic + runtime.Unknown."""
    api_version, kind = obj.get("apiVersion") or "", obj.get("kind") or ""
    cls = message_class(api_version, kind)
    if cls is None:
        raise NotEncodable(f"{kind} in {api_version}")
    msg = cls()
    _fill(msg, {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}, kind)
    unknown_cls = pool_message("k8s.io.apimachinery.pkg.runtime.Unknown")
    env: Any = unknown_cls(raw=msg.SerializeToString(), contentType="")
    env.typeMeta.apiVersion, env.typeMeta.kind = api_version, kind
    return MAGIC + env.SerializeToString()


def _fill(msg: Any, value: Any, path: str) -> None:
    desc = msg.DESCRIPTOR
    name = desc.full_name
    if name in (_META + "Time", _META + "MicroTime"):
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        msg.seconds, msg.nanos = int(stamp.timestamp()), stamp.microsecond * 1000
        return
    if name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        if isinstance(value, int):
            msg.type, msg.intVal = 0, value
        else:
            msg.type, msg.strVal = 1, str(value)
        return
    if name == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        msg.string = str(value)
        return
    if name in ("k8s.io.apimachinery.pkg.runtime.RawExtension", _META + "FieldsV1"):
        setattr(msg, "raw" if name.endswith("RawExtension") else "Raw", json.dumps(value).encode())
        return
    if name.endswith(".ExtraValue"):
        msg.items.extend(value)
        return
    if name == _META + "Duration":
        raise NotEncodable(f"a Duration at {path}")
    if not isinstance(value, dict):
        raise NotEncodable(f"{path}: {type(value).__name__} for {name}")
    inline = [fd for fd in desc.fields if fd.name in _INLINE]
    for key, v in value.items():
        if v is None:
            continue
        fd = desc.fields_by_name.get(key)
        target = msg
        if fd is None and key in ("apiVersion", "kind"):
            continue  # a list item's TypeMeta: not on the wire (the list's envelope names the kind)
        if fd is None or fd.name in _INLINE:
            holder = next((i for i in inline if key in i.message_type.fields_by_name), None)
            if holder is None:
                raise NotEncodable(f"field {key!r} of {name} at {path}")
            target, fd = getattr(msg, holder.name), holder.message_type.fields_by_name[key]
        _set(target, fd, v, f"{path}.{key}")


def _set(msg: Any, fd: FieldDescriptor, v: Any, path: str) -> None:
    if _is_map(fd):
        vfd = fd.message_type.fields_by_name["value"]
        field = getattr(msg, fd.name)
        for k, item in v.items():
            if vfd.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(field[k], item, f"{path}[{k}]")
            else:
                field[k] = _scalar(vfd, item)
    elif _repeated(fd):
        field = getattr(msg, fd.name)
        for i, item in enumerate(v):
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(field.add(), item, f"{path}[{i}]")
            else:
                field.append(_scalar(fd, item))
    elif fd.type == FieldDescriptor.TYPE_MESSAGE:
        sub = getattr(msg, fd.name)
        sub.SetInParent()
        _fill(sub, v, path)
    else:
        setattr(msg, fd.name, _scalar(fd, v))


def _scalar(fd: FieldDescriptor, v: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64decode(v)
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float(v)
    return v
