"""The Seldon Core v1 operator: SeldonDeployment -> Deployments, Services, HPAs, and its status.

Reconcile (seldondeployment_controller.go ``Reconcile``): build the components (``seldon_objects.build``),
create-or-update services, HPAs and deployments with a controller ownerReference to the
SeldonDeployment (so deleting it garbage-collects them), delete HPAs no longer wanted, then write
``status`` (state Creating / Available / Failed, deploymentStatus, serviceStatus, address, conditions).
An object is rewritten only when a field the operator owns differs from what it wants (server
defaults ignored), so a quiet SeldonDeployment produces no writes. A Deployment scaled by an HPA keeps
the HPA's replica count. A spec the operator cannot build (e.g. graph.name matching no container)
ends in state Failed with the reason as ``description`` and an InternalError event, as Seldon does.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import Any

from ack_sandbox.context import SandboxContext
from ack_sandbox.controllers import seldon_objects as so
from ack_sandbox.controllers.base import (
    DEPLOYMENTS,
    HPAS,
    SELDON_DEPLOYMENTS,
    SERVICES,
    Controller,
    Key,
    Kind,
    Obj,
    controller_of,
    now_iso,
    owner_ref,
)
from ack_sandbox.k8s.errors import ApiError

log = logging.getLogger("ack_sandbox.controllers.seldon")


class SeldonController(Controller):
    name = "seldon-controller-manager"
    primary = SELDON_DEPLOYMENTS
    watches = (DEPLOYMENTS, SERVICES, HPAS)

    def __init__(self, ctx: SandboxContext, engine_image: str = so.ENGINE_IMAGE, **kw: Any) -> None:
        super().__init__(ctx, **kw)
        self.engine_image = engine_image

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == SELDON_DEPLOYMENTS:
            return [(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])]
        ref = controller_of(obj)
        if ref is not None and ref.get("kind") == "SeldonDeployment":
            return [(obj["metadata"].get("namespace", ""), ref["name"])]
        return []

    async def reconcile(self, key: Key) -> float | None:
        ns, name = key
        sdep = await self.api.get_or_none(SELDON_DEPLOYMENTS, ns, name)
        if sdep is None or sdep["metadata"].get("deletionTimestamp"):
            return None
        try:
            comps = so.build(sdep, self.engine_image)
        except so.SeldonSpecError as exc:
            await self.events.record(sdep, "Warning", "InternalError", str(exc))
            await self._write_status(
                sdep, so.compute_status(None, {}, False, sdep.get("status") or {}, now_iso(), error=str(exc))
            )
            return None
        ref = owner_ref(sdep, SELDON_DEPLOYMENTS)
        try:
            services_ready = await self._services(sdep, comps, ref)
            await self._hpas(sdep, comps, ref)
            deployments = await self._deployments(sdep, comps, ref)
        except ApiError as exc:
            if exc.code == 409:
                raise  # retried by the loop, as Seldon ignores conflicts in updateStatusForError
            await self.events.record(sdep, "Warning", "InternalError", exc.message)
            await self._write_status(
                sdep, so.compute_status(None, {}, False, sdep.get("status") or {}, now_iso(), error=exc.message)
            )
            raise
        status = so.compute_status(comps, deployments, services_ready, sdep.get("status") or {}, now_iso())
        await self._write_status(sdep, status)
        return None

    # --- children ------------------------------------------------------------------------------------
    async def _upsert(
        self, sdep: Obj, kind: Kind, desired: Obj, ref: dict, owned: tuple[str, ...], event: str
    ) -> tuple[Obj, bool]:
        """Create ``desired`` or update the fields in ``owned`` of the existing object; (object, existed)."""
        desired["metadata"]["ownerReferences"] = [ref]
        meta = desired["metadata"]
        found = await self.api.get_or_none(kind, meta["namespace"], meta["name"])
        if found is None:
            created = await self.api.create(kind, copy.deepcopy(desired))
            await self.events.record(sdep, "Normal", f"Create{kind.kind}", f'Created {kind.kind} "{meta["name"]}"')
            return created, False
        want = {k: desired["spec"][k] for k in owned if k in desired["spec"]}
        labels_ok = so.contains(found["metadata"].get("labels") or {}, meta.get("labels") or {})
        if so.contains(found.get("spec") or {}, want) and labels_ok:
            return found, True
        updated = copy.deepcopy(found)
        updated["spec"] = {**(found.get("spec") or {}), **copy.deepcopy(want)}
        updated["metadata"]["labels"] = {**(found["metadata"].get("labels") or {}), **(meta.get("labels") or {})}
        if not controller_of(updated):
            updated["metadata"]["ownerReferences"] = [*(updated["metadata"].get("ownerReferences") or []), ref]
        result = await self.api.update(kind, updated)
        await self.events.record(sdep, "Normal", event, f'Updated {kind.kind} "{meta["name"]}"')
        return result, True

    async def _services(self, sdep: Obj, comps: so.Components, ref: dict) -> bool:
        ready = True
        for svc in comps.services:
            _, existed = await self._upsert(sdep, SERVICES, svc, ref, ("selector", "ports", "type"), "UpdateService")
            ready = ready and existed
        return ready

    async def _hpas(self, sdep: Obj, comps: so.Components, ref: dict) -> None:
        wanted = {h["metadata"]["name"] for h in comps.hpas}
        for hpa in comps.hpas:
            await self._upsert(
                sdep,
                HPAS,
                hpa,
                ref,
                ("scaleTargetRef", "minReplicas", "maxReplicas", "metrics"),
                "UpdateHorizontalPodAutoscaler",
            )
        ns = sdep["metadata"].get("namespace", "default")
        for dep in comps.deployments:  # an HPA whose hpaSpec was removed goes away
            name = dep["metadata"]["name"]
            if name in wanted:
                continue
            found = await self.api.get_or_none(HPAS, ns, name)
            if found is not None and (controller_of(found) or {}).get("uid") == ref["uid"]:
                await self.api.delete(HPAS, ns, name, propagation_policy="Foreground")
                await self.events.record(
                    sdep, "Normal", "DeleteHorizontalPodAutoscaler", f'Deleted HorizontalPodAutoscaler "{name}"'
                )

    async def _deployments(self, sdep: Obj, comps: so.Components, ref: dict) -> dict[str, Obj | None]:
        out: dict[str, Obj | None] = {}
        for dep in comps.deployments:
            name = dep["metadata"]["name"]
            owned: tuple[str, ...] = ("selector", "template", "strategy", "progressDeadlineSeconds")
            if name not in comps.hpa_targets:
                owned = ("replicas", *owned)  # with an HPA the replica count is the HPA's
            else:
                found = await self.api.get_or_none(DEPLOYMENTS, dep["metadata"]["namespace"], name)
                if found is not None:
                    dep["spec"]["replicas"] = (found.get("spec") or {}).get("replicas", dep["spec"]["replicas"])
            obj, _ = await self._upsert(sdep, DEPLOYMENTS, dep, ref, owned, "UpdateDeployment")
            out[name] = obj
        return out

    async def _write_status(self, sdep: Obj, status: dict) -> None:
        old = sdep.get("status") or {}
        if status == old:
            return
        obj = copy.deepcopy(sdep)
        obj["status"] = status
        await self.api.update_status(SELDON_DEPLOYMENTS, obj)


async def start(ctx: SandboxContext) -> list[Controller]:
    """Start the Seldon operator; ``await c.stop()`` on each returned controller to stop."""
    ctrl = SeldonController(ctx)
    await ctrl.start()
    return [ctrl]
