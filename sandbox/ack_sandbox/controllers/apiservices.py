"""APIService objects (``apiregistration.k8s.io/v1``) for every served group-version, as kube-aggregator's
autoregister and crd-autoregistration controllers keep them (staging/src/k8s.io/kube-aggregator).

Built-in and CRD group-versions are ``Local`` (no ``spec.service``; ``Available`` True, reason ``Local``);
aggregated groups served in-process (``k8s.service.register_api_group``: metrics.k8s.io,
external.metrics.k8s.io) point at the Service an ACK cluster runs them behind (``kube-system/metrics-server``,
``kube-system/alibaba-cloud-metrics-adapter``), ``Available`` True, reason ``Passed``. Names are
``<version>.<group>`` (``v1.`` for the core group). APIServices of group-versions that are no longer served
(a deleted CRD) are removed; ones nobody registered are left alone.
"""

from __future__ import annotations

from typing import Any

from ack_sandbox.controllers.base import Controller, Key, Kind, Obj, now_iso

CRDS = Kind("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False)
APISERVICES = Kind("apiregistration.k8s.io", "v1", "apiservices", "APIService", namespaced=False)
MANAGED_LABEL = "kube-aggregator.kubernetes.io/automanaged"
SERVICES = {
    "metrics.k8s.io": ("kube-system", "metrics-server"),
    "external.metrics.k8s.io": ("kube-system", "alibaba-cloud-metrics-adapter"),
}
# Group priorities of the built-in groups (kube-aggregator's apiVersionPriorities); others get 1000/100.
PRIORITY = {"": 18000, "apps": 17800, "events.k8s.io": 17750, "autoscaling": 17500, "batch": 17400}


class ApiServiceController(Controller):
    name = "apiservice-autoregistration"
    primary = CRDS
    resync = 30.0

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> list[Key]:
        return [("", "all")]

    def _wanted(self) -> dict[str, Obj]:
        from ack_sandbox.k8s.service import _AGG

        store = self.ctx.services["kubernetes"]
        gvs: list[tuple[str, str, bool]] = []
        for group, versions, _ in store.registry.groups():
            gvs += [(group, v, False) for v in versions]
        for agg in self.ctx.services.get(_AGG, {}).values():
            gvs.append((agg.group, agg.version, True))
        out: dict[str, Obj] = {}
        for group, version, remote in gvs:
            name = f"{version}.{group}"
            spec: dict[str, Any] = {
                "group": group,
                "version": version,
                "groupPriorityMinimum": PRIORITY.get(group, 1000),
                "versionPriority": 15 if version == "v1" else 9,
            }
            if remote:
                ns, svc = SERVICES.get(group, ("kube-system", group.split(".")[0]))
                spec["service"] = {"namespace": ns, "name": svc, "port": 443}
                spec["insecureSkipTLSVerify"] = True
            out[name] = {
                "metadata": {"name": name, "labels": {MANAGED_LABEL: "onstart" if not remote else "true"}},
                "spec": spec,
            }
        return out

    async def reconcile(self, key: Key) -> float | None:
        wanted = self._wanted()
        existing = {o["metadata"]["name"]: o for o in await self.api.list(APISERVICES)}
        for name, doc in wanted.items():
            cur = existing.get(name)
            remote = "service" in doc["spec"]
            if cur is None:
                cur = await self.api.create(APISERVICES, doc)
            elif cur.get("spec") != doc["spec"]:
                cur["spec"] = doc["spec"]
                cur = await self.api.update(APISERVICES, cur)
            cond = {
                "type": "Available",
                "status": "True",
                "reason": "Passed" if remote else "Local",
                "message": "all checks passed" if remote else "Local APIServices are always available",
            }
            conds = (cur.get("status") or {}).get("conditions") or []
            if not any({k: c.get(k) for k in cond} == cond for c in conds):
                cur["status"] = {"conditions": [{**cond, "lastTransitionTime": now_iso()}]}
                await self.api.update_status(APISERVICES, cur)
        for name, obj in existing.items():
            if name not in wanted and (obj["metadata"].get("labels") or {}).get(MANAGED_LABEL):
                await self.api.delete(APISERVICES, "", name)
        return 30.0
