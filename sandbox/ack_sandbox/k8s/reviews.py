"""Create-only review kinds answered from the request's user, never stored, and the RBAC kinds' rows/defaults.

- ``authorization.k8s.io/v1`` SelfSubjectAccessReview (``kubectl auth can-i``): ``spec.resourceAttributes``
  (namespace, verb, group, resource, subresource, name) or ``spec.nonResourceAttributes`` (path, verb) judged
  by the sandbox's authorizer (``k8s.auth``), answered 201 with ``status.allowed`` (and ``denied``/``reason``).
- ``authentication.k8s.io/v1`` SelfSubjectReview (``kubectl auth whoami``): ``status.userInfo`` with the
  username and groups (``system:masters`` for the admin, ``system:authenticated`` for everyone).

Types: k8s.io/api/authorization/v1 and authentication/v1 ``types.go``. The stored ``rbac.authorization.k8s.io/v1``
objects (Roles, ClusterRoles and their bindings) are served as data: the sandbox's authorizer is the fixed
two-user policy, so a RoleBinding grants nothing here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ack_sandbox.k8s import auth, errors, meta
from ack_sandbox.k8s.tables import _md
from ack_sandbox.k8s.validation import Cause, invalid, required

REVIEWS = {("authorization.k8s.io", "selfsubjectaccessreviews"), ("authentication.k8s.io", "selfsubjectreviews")}


def groups_of(user: auth.User) -> list[str]:
    return ["system:masters", "system:authenticated"] if user.admin else ["system:authenticated"]


def answer(
    group: str,
    plural: str,
    body: dict[str, Any],
    user: auth.User,
    now: str,
    cluster_scoped: Callable[[str, str], bool] = lambda group, resource: False,
) -> dict[str, Any]:
    """The review's answer. ``cluster_scoped(group, resource)``: kubectl auth can-i sends its current namespace
    even for nodes; the namespace then grants nothing (a RoleBinding cannot grant a cluster-scoped resource)."""
    out = copy.deepcopy(body)
    md = out.setdefault("metadata", {})
    md.setdefault("creationTimestamp", now)
    if plural == "selfsubjectreviews":
        out["status"] = {"userInfo": {"username": user.name, "groups": groups_of(user)}}
        return out
    spec = out.get("spec") or {}
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (ra is None) == (nra is None):
        raise errors.invalid(
            group,
            "SelfSubjectAccessReview",
            "",
            [
                required(
                    "spec.resourceAttributes",
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            ],
        )
    if nra is not None:
        # non-resource URLs (/healthz, /version, discovery) are open to every authenticated user here
        path = nra.get("path", "")
        allowed = (
            user.admin
            or path in ("/healthz", "/livez", "/readyz", "/version", "/api", "/apis")
            or path.startswith(("/api/", "/apis/", "/openapi/"))
        )
        out["status"] = {"allowed": allowed}
        return out
    try:
        auth.authorize(
            user,
            ra.get("verb", ""),
            ra.get("group", ""),
            ra.get("resource", ""),
            None if cluster_scoped(ra.get("group", ""), ra.get("resource", "")) else ra.get("namespace") or None,
            ra.get("name") or None,
            ra.get("subresource") or None,
        )
        out["status"] = {
            "allowed": True,
            "reason": "allowed by the sandbox authorizer (" + ", ".join(groups_of(user)) + ")",
        }
    except errors.ApiError:
        out["status"] = {"allowed": False}
    return out


def validate_binding(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    ref = obj.get("roleRef") or {}
    out: list[Cause] = []
    if not ref.get("name"):
        out.append(required("roleRef.name"))
    if ref.get("kind") not in ("Role", "ClusterRole"):
        out.append(
            (
                "FieldValueNotSupported",
                "roleRef.kind",
                f'Unsupported value: "{ref.get("kind", "")}": supported values: "Role", "ClusterRole"',
            )
        )
    if old is not None and (old.get("roleRef") or {}) != ref:
        out.append(invalid("roleRef", ref, "cannot change roleRef"))
    return out


def apiservice_name_errors(value: str) -> list[str]:
    """``<version>.<group>``, the group may be empty (``v1.``): ValidateAPIServiceName (kube-aggregator)."""
    version, _, group = value.partition(".")
    if not version or not _:
        return ['must be of the form "<version>.<group>" (e.g. "v1.apps", "v1." for the core group)']
    return meta.dns1123_label_errors(version) + (meta.dns1123_subdomain_errors(group) if group else [])


def created_row(o: dict[str, Any], now: float) -> list[Any]:
    return [_md(o).get("name"), _md(o).get("creationTimestamp")]


def binding_row(o: dict[str, Any], now: float) -> list[Any]:
    ref = o.get("roleRef") or {}
    subs = o.get("subjects") or []

    def names(kind: str) -> str:
        picked = [
            (f"{s.get('namespace')}/{s.get('name')}" if kind == "ServiceAccount" else s.get("name", ""))
            for s in subs
            if s.get("kind") == kind
        ]
        return ", ".join(picked)

    return [
        _md(o).get("name"),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        meta.age(o, now),
        names("User"),
        names("Group"),
        names("ServiceAccount"),
    ]


def apiservice_row(o: dict[str, Any], now: float) -> list[Any]:
    svc = (o.get("spec") or {}).get("service")
    cond = next((c for c in (o.get("status") or {}).get("conditions") or [] if c.get("type") == "Available"), {})
    avail = cond.get("status", "Unknown")
    if avail != "True" and cond.get("reason"):
        avail = f"{avail} ({cond['reason']})"
    return [_md(o).get("name"), f"{svc['namespace']}/{svc['name']}" if svc else "Local", avail, meta.age(o, now)]


CREATED_TABLE = ([("Name", "string", 0), ("Created At", "date", 0)], created_row)
BINDING_TABLE = (
    [
        ("Name", "string", 0),
        ("Role", "string", 0),
        ("Age", "string", 0),
        ("Users", "string", 1),
        ("Groups", "string", 1),
        ("ServiceAccounts", "string", 1),
    ],
    binding_row,
)
APISERVICE_TABLE = (
    [("Name", "string", 0), ("Service", "string", 0), ("Available", "string", 0), ("Age", "string", 0)],
    apiservice_row,
)
