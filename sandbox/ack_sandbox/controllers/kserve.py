"""KServe's InferenceService controller in RawDeployment mode: InferenceService -> Deployment, Service, HPA,
Ingress, and its status (see ``kserve_objects`` for what is derived and where in kserve/kserve it comes from).

Reconcile (``pkg/controller/v1beta1/inferenceservice/controller.go``): build the predictor's objects, create or
update them with a controller ownerReference to the InferenceService (deleting it garbage-collects them), delete
a KServe-created HPA when ``autoscalerClass`` became ``external``, then write ``status``. A spec KServe cannot
serve (no runtime for the model format, a storageUri the sandbox cannot mount) ends with ``PredictorReady=False``
naming KServe's FailureReason, ``modelStatus.transitionStatus: InvalidSpec`` and an ``InternalError`` event. The
pods' kserve-container crash-looping shows as ``modelStatus.transitionStatus: BlockedByFailedLoad`` (pods are
read at each reconcile, not watched).
A Deployment that exists keeps the replica count its autoscaler set.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import Any

from ack_sandbox.context import SandboxContext
from ack_sandbox.controllers import kserve_objects as ko
from ack_sandbox.controllers.base import (
    DEPLOYMENTS,
    HPAS,
    INFERENCE_SERVICES,
    INGRESSES,
    PODS,
    SERVICES,
    Controller,
    Key,
    Kind,
    Obj,
    controller_of,
    now_iso,
    owner_ref,
)
from ack_sandbox.controllers.seldon_objects import contains
from ack_sandbox.k8s.errors import ApiError

log = logging.getLogger("ack_sandbox.controllers.kserve")


class KServeController(Controller):
    name = "kserve-controller-manager"
    primary = INFERENCE_SERVICES
    # Not pods: every pod status change of the cluster would be copied to this loop; the predictor's pods are
    # listed in each reconcile, which the Deployment's own status changes (and the resync) trigger.
    watches = (DEPLOYMENTS, SERVICES, HPAS, INGRESSES)

    def __init__(self, ctx: SandboxContext, **kw: Any) -> None:
        super().__init__(ctx, **kw)

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        meta = obj["metadata"]
        if kind == INFERENCE_SERVICES:
            return [(meta.get("namespace", ""), meta["name"])]
        ref = controller_of(obj)
        if ref is not None and ref.get("kind") == "InferenceService":
            return [(meta.get("namespace", ""), ref["name"])]
        return []

    async def reconcile(self, key: Key) -> float | None:
        ns, name = key
        isvc = await self.api.get_or_none(INFERENCE_SERVICES, ns, name)
        if isvc is None or isvc["metadata"].get("deletionTimestamp"):
            return None
        try:
            comps = ko.build(isvc)
        except ko.IsvcSpecError as exc:
            await self.events.record(isvc, "Warning", "InternalError", str(exc))
            await self._write_status(isvc, ko.compute_status(isvc, None, None, False, [], now_iso(), error=exc))
            return None
        ref = owner_ref(isvc, INFERENCE_SERVICES)
        try:
            await self._upsert(isvc, SERVICES, comps.service, ref, ("selector", "ports", "type"))
            deployment = await self._deployment(isvc, comps, ref)
            await self._hpa(isvc, comps, ref)
        except ApiError as exc:
            if exc.code != 409:
                await self.events.record(isvc, "Warning", "InternalError", exc.message)
            raise
        pods = await self.api.list(PODS, ns, label_selector=f"{ko.LABEL_ISVC}={name}")
        status = ko.compute_status(isvc, comps, deployment, False, pods, now_iso())
        ingress_ready = False
        predictor_ready = any(c["type"] == "PredictorReady" and c["status"] == "True" for c in status["conditions"])
        if comps.ingress is not None and predictor_ready:  # createRawIngress waits for PredictorReady
            await self._upsert(isvc, INGRESSES, comps.ingress, ref, ("rules",))
            ingress_ready = True
            status = ko.compute_status(isvc, comps, deployment, ingress_ready, pods, now_iso())
        await self._write_status(isvc, status)
        return None

    # --- children ------------------------------------------------------------------------------------
    async def _upsert(self, isvc: Obj, kind: Kind, desired: Obj, ref: dict, owned: tuple[str, ...]) -> Obj:
        """Create ``desired`` or update the fields in ``owned`` (and its labels) of the existing object."""
        desired["metadata"]["ownerReferences"] = [ref]
        meta = desired["metadata"]
        found = await self.api.get_or_none(kind, meta["namespace"], meta["name"])
        if found is None:
            created = await self.api.create(kind, copy.deepcopy(desired))
            log.info("created %s %s/%s", kind.kind, meta["namespace"], meta["name"])
            return created
        want = {k: desired["spec"][k] for k in owned if k in desired["spec"]}
        labels_ok = contains(found["metadata"].get("labels") or {}, meta.get("labels") or {})
        if contains(found.get("spec") or {}, want) and labels_ok:
            return found
        updated = copy.deepcopy(found)
        updated["spec"] = {**(found.get("spec") or {}), **copy.deepcopy(want)}
        updated["metadata"]["labels"] = {**(found["metadata"].get("labels") or {}), **(meta.get("labels") or {})}
        if not controller_of(updated):
            updated["metadata"]["ownerReferences"] = [*(updated["metadata"].get("ownerReferences") or []), ref]
        result: Obj = await self.api.update(kind, updated)
        return result

    async def _deployment(self, isvc: Obj, comps: ko.Components, ref: dict) -> Obj:
        dep = comps.deployment
        found = await self.api.get_or_none(DEPLOYMENTS, dep["metadata"]["namespace"], dep["metadata"]["name"])
        if found is not None:  # the autoscaler's (KServe's HPA or the external one) replica count stays
            dep["spec"]["replicas"] = (found.get("spec") or {}).get("replicas", dep["spec"]["replicas"])
        return await self._upsert(isvc, DEPLOYMENTS, dep, ref, ("replicas", "selector", "template", "strategy"))

    async def _hpa(self, isvc: Obj, comps: ko.Components, ref: dict) -> None:
        ns = isvc["metadata"].get("namespace", "default")
        name = ko.predictor_name(isvc["metadata"]["name"])
        if comps.hpa is not None:
            await self._upsert(isvc, HPAS, comps.hpa, ref, ("scaleTargetRef", "minReplicas", "maxReplicas", "metrics"))
            return
        found = await self.api.get_or_none(HPAS, ns, name)  # external: only an HPA KServe created goes
        if found is not None and (controller_of(found) or {}).get("uid") == ref["uid"]:
            await self.api.delete(HPAS, ns, name)

    async def _write_status(self, isvc: Obj, status: dict) -> None:
        if status == (isvc.get("status") or {}):
            return
        obj = copy.deepcopy(isvc)
        obj["status"] = status
        await self.api.update_status(INFERENCE_SERVICES, obj)
