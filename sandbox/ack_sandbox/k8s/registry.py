"""Which resource types the server serves: the built-in kinds plus one entry per served CRD version."""

from __future__ import annotations

from typing import Any

from ack_sandbox.k8s import kinds
from ack_sandbox.k8s.kinds import ResourceType


class Registry:
    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in kinds.builtin_kinds():
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt

    def remove_group_resource(self, group: str, plural: str) -> None:
        for key in [k for k in self._types if k[0] == group and k[2] == plural]:
            del self._types[key]

    def register_crd(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        self.remove_group_resource(spec["group"], spec["names"]["plural"])
        for rt in kinds.from_crd(crd):
            self.add(rt)

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def preferred(self, group: str, plural: str) -> ResourceType | None:
        cands = [rt for rt in self._types.values() if rt.group == group and rt.plural == plural]
        return next((rt for rt in cands if rt.preferred), cands[0] if cands else None)

    def storage_type(self, gr: tuple[str, str]) -> ResourceType | None:
        """The type whose objects live under ``gr`` in the store (never an alias like events.k8s.io)."""
        rt = self.preferred(*gr)
        return rt if rt is not None and rt.storage is None else None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return next(
            (rt for rt in self._types.values() if rt.group == group and rt.version == version and rt.kind == kind), None
        )

    def resolve(self, what: str | tuple[str, str] | ResourceType) -> ResourceType:
        """``"pods"``, ``"deployments.apps"``, ``"Deployment"``, ``"sdep"``, ``("apps", "deployments")`` → a type.

        Core kinds win over same-named kinds in other groups (``"events"`` is core/v1 events).
        """
        if isinstance(what, ResourceType):
            return what
        if isinstance(what, tuple):
            rt = self.preferred(*what)
            if rt is None:
                raise KeyError(f"unknown resource {what!r}")
            return rt
        name = what
        order = sorted(self._types.values(), key=lambda r: (r.group != "", r.storage is not None, not r.preferred))
        for rt in order:
            if (
                name in (rt.plural, rt.singular, rt.kind, rt.qualified, f"{rt.kind}.{rt.group}")
                or name in rt.short_names
            ):
                return rt
        for rt in order:
            if name.lower() in (rt.plural, rt.singular, rt.kind.lower()):
                return rt
        raise KeyError(
            f"unknown resource {name!r}: use a plural ('pods'), 'plural.group' ('deployments.apps') or a Kind"
        )

    def groups(self) -> list[tuple[str, list[str], str]]:
        """(group, versions, preferred version), core group first, others in registration order."""
        seen: dict[str, list[str]] = {}
        pref: dict[str, str] = {}
        for rt in self._types.values():
            vs = seen.setdefault(rt.group, [])
            if rt.version not in vs:
                vs.append(rt.version)
            if rt.preferred:
                pref.setdefault(rt.group, rt.version)
        return [(g, vs, pref.get(g, vs[0])) for g, vs in seen.items()]
