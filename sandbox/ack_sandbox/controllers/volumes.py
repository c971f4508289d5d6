"""Volumes: the PV/PVC binder (kube-controller-manager's persistentvolume controller) and the kubelet's
volume mounts, including the Alibaba Cloud OSS CSI driver ``ossplugin.csi.alibabacloud.com``.

Binding (pkg/controller/volume/persistentvolume): a Pending claim binds to the smallest Available PV
whose storageClassName equals the claim's ("" and unset both mean "no class"), whose accessModes include
the claim's, whose capacity covers the request and whose labels match the claim's selector (or the
PV the claim names in ``volumeName``). Both sides get the bind annotations and ``Bound`` phases; a claim
whose PV disappears becomes ``Lost``; a PV whose claim is deleted becomes ``Released`` (Retain) or is
deleted (Delete).

Mounting an OSS CSI volume materialises the objects under ``bucket/path`` into a per-pod directory
(a read-only view: a fresh copy per pod start), read through the OSS stand-in's HTTP API with oss2 and
the volume's own credentials, resolved as the CSI node plugin does (alibaba-cloud-csi-driver
``pkg/oss/utils.go``, reference §3): the Secret of ``nodePublishSecretRef`` — legacy ``akId``/``akSecret``
(both or neither) first, then ``AccessKeyId``/``AccessKeySecret`` (+``SecurityToken``), keys matched
case-insensitively — else inline ``akId``/``akSecret`` volumeAttributes. A refused credential leaves the
pod ``ContainerCreating`` with ``FailedMount`` events, as on a real node.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ack_sandbox.context import SandboxContext
from ack_sandbox.controllers.base import CONFIGMAPS, PVCS, PVS, SECRETS, Api, Controller, Key, Kind, Obj, key_of
from ack_sandbox.controllers.scheduler import parse_quantity
from ack_sandbox.k8s.meta import labels_match, selector_from_label_selector

log = logging.getLogger("ack_sandbox.controllers.volumes")

OSS_DRIVER = "ossplugin.csi.alibabacloud.com"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"


class MountError(Exception):
    """A volume could not be set up; the message is the FailedMount event's."""


# --- binding (pure) ----------------------------------------------------------------------------------------


def _class(obj: Obj) -> str:
    return obj.get("spec", {}).get("storageClassName") or ""


def pv_matches_claim(pv: Obj, pvc: Obj) -> bool:
    pspec, cspec = pv.get("spec", {}), pvc.get("spec", {})
    if pv.get("metadata", {}).get("deletionTimestamp"):
        return False
    ref = pspec.get("claimRef")
    if ref and not (
        ref.get("name") == pvc["metadata"]["name"]
        and ref.get("namespace") == pvc["metadata"].get("namespace")
        and (not ref.get("uid") or ref.get("uid") == pvc["metadata"].get("uid"))
    ):
        return False
    if cspec.get("volumeName") and cspec["volumeName"] != pv["metadata"]["name"]:
        return False
    if _class(pv) != _class(pvc):
        return False
    if not set(cspec.get("accessModes") or []) <= set(pspec.get("accessModes") or []):
        return False
    want = parse_quantity(((cspec.get("resources") or {}).get("requests") or {}).get("storage", 0))
    have = parse_quantity((pspec.get("capacity") or {}).get("storage", 0))
    if have < want:
        return False
    if (cspec.get("volumeMode") or "Filesystem") != (pspec.get("volumeMode") or "Filesystem"):
        return False
    reqs = selector_from_label_selector(cspec.get("selector"))
    return labels_match(reqs, pv.get("metadata", {}).get("labels"))


def best_pv(pvs: list[Obj], pvc: Obj) -> Obj | None:
    """The claim's pre-bound PV if any, else the smallest matching Available one (findBestMatchForClaim)."""
    candidates = [
        pv
        for pv in pvs
        if pv_matches_claim(pv, pvc)
        and (
            pv.get("status", {}).get("phase") in (None, "", "Available", "Pending")
            or (pv.get("spec", {}).get("claimRef") or {}).get("name") == pvc["metadata"]["name"]
        )
    ]
    if not candidates:
        return None
    prebound = [pv for pv in candidates if pv.get("spec", {}).get("claimRef")]
    if prebound:
        return prebound[0]
    return min(
        candidates,
        key=lambda pv: (parse_quantity(pv["spec"].get("capacity", {}).get("storage", 0)), pv["metadata"]["name"]),
    )


class ClaimBinder(Controller):
    """Binds PersistentVolumeClaims to PersistentVolumes."""

    name = "persistentvolume-binder-controller"
    primary = PVCS
    watches = (PVS,)
    resync = 15.0  # the upstream controller re-syncs claims every 15 s

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == PVCS:
            return [key_of(obj)]
        ref = obj.get("spec", {}).get("claimRef")
        if ref:
            return [(ref.get("namespace", ""), ref.get("name", ""))]
        return list(self._pending)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: set[Key] = set()

    async def reconcile(self, key: Key) -> float | None:
        pvc = await self.api.get_or_none(PVCS, *key)
        if pvc is None:
            self._pending.discard(key)
            return None
        spec, status = pvc.setdefault("spec", {}), pvc.setdefault("status", {})
        if spec.get("volumeName") and status.get("phase") == "Bound":
            self._pending.discard(key)
            pv = await self.api.get_or_none(PVS, "", spec["volumeName"])
            if pv is None:
                status["phase"] = "Lost"
                await self.api.update_status(PVCS, pvc)
                await self.events.record(
                    pvc,
                    "Warning",
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
            return None
        pvs = await self.api.list(PVS)
        pv = best_pv(pvs, pvc)
        if pv is None:
            self._pending.add(key)
            if status.get("phase") != "Pending":
                status["phase"] = "Pending"
                await self.api.update_status(PVCS, pvc)
            msg = (
                "no persistent volumes available for this claim and no storage class is set"
                if not _class(pvc)
                else f'storageclass.storage.k8s.io "{_class(pvc)}" not found'
            )
            await self.events.record(
                pvc,
                "Normal" if not _class(pvc) else "Warning",
                "FailedBinding" if not _class(pvc) else "ProvisioningFailed",
                msg,
            )
            return None
        await self._bind(pv, pvc)
        self._pending.discard(key)
        return None

    async def _bind(self, pv: Obj, pvc: Obj) -> None:
        pv_name = pv["metadata"]["name"]
        if not pv["spec"].get("claimRef"):
            pv["spec"]["claimRef"] = {
                "kind": "PersistentVolumeClaim",
                "namespace": pvc["metadata"]["namespace"],
                "name": pvc["metadata"]["name"],
                "uid": pvc["metadata"]["uid"],
                "apiVersion": "v1",
                "resourceVersion": pvc["metadata"].get("resourceVersion", ""),
            }
            pv["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
            pv = await self.api.update(PVS, pv)
        elif not pv["spec"]["claimRef"].get("uid"):
            pv["spec"]["claimRef"]["uid"] = pvc["metadata"]["uid"]
            pv = await self.api.update(PVS, pv)
        if pv.get("status", {}).get("phase") != "Bound":
            pv.setdefault("status", {})["phase"] = "Bound"
            await self.api.update_status(PVS, pv)
        ann = pvc["metadata"].setdefault("annotations", {})
        ann[ANN_BIND_COMPLETED] = "yes"
        ann[ANN_BOUND_BY_CONTROLLER] = "yes"
        pvc["spec"]["volumeName"] = pv_name
        pvc = await self.api.update(PVCS, pvc)
        pvc["status"] = {
            "phase": "Bound",
            "accessModes": list(pv["spec"].get("accessModes") or []),
            "capacity": dict(pv["spec"].get("capacity") or {}),
        }
        await self.api.update_status(PVCS, pvc)


class VolumePhases(Controller):
    """PV phases: Available without a claim, Released when the bound claim is gone (or deleted when the
    reclaim policy is Delete)."""

    name = "persistentvolume-controller"
    primary = PVS
    watches = (PVCS,)
    resync = 15.0

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == PVS:
            return [key_of(obj)]
        name = obj.get("spec", {}).get("volumeName")
        return [("", name)] if name else []

    async def reconcile(self, key: Key) -> float | None:
        pv = await self.api.get_or_none(PVS, *key)
        if pv is None:
            return None
        ref = pv.get("spec", {}).get("claimRef")
        phase = pv.get("status", {}).get("phase")
        if not ref:
            want = "Available"
        else:
            pvc = await self.api.get_or_none(PVCS, ref.get("namespace", ""), ref.get("name", ""))
            if pvc is not None and (not ref.get("uid") or pvc["metadata"]["uid"] == ref.get("uid")):
                want = (
                    "Bound"
                    if pvc.get("spec", {}).get("volumeName") == pv["metadata"]["name"]
                    else (phase or "Available")
                )
            elif ref.get("uid") or phase == "Bound":
                if pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                    await self.api.delete(PVS, "", pv["metadata"]["name"])
                    return None
                want = "Released"
            else:
                want = "Available"
        if phase != want:
            pv.setdefault("status", {})["phase"] = want
            if want == "Released":
                pv["status"]["lastPhaseTransitionTime"] = pv["status"].get("lastPhaseTransitionTime")
            await self.api.update_status(PVS, pv)
        return None


# --- mounting ----------------------------------------------------------------------------------------------


def secret_bytes(secret: Obj) -> dict[str, bytes]:
    """A Secret's data; ``stringData`` overlays ``data`` as the apiserver merges it on write."""
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def _ci(mapping: dict[str, Any], key: str) -> Any:
    """Case-insensitive lookup, as the CSI plugin reads attributes and secret keys."""
    for k, v in mapping.items():
        if k.lower() == key.lower():
            return v
    return None


def oss_credentials(secret_data: dict[str, str] | None, attributes: dict[str, str]) -> tuple[str, str, str] | None:
    """(AccessKeyId, AccessKeySecret, SecurityToken) as the OSS CSI node plugin resolves them."""
    if secret_data:
        ak, sk = _ci(secret_data, "akId"), _ci(secret_data, "akSecret")
        if ak and sk:
            return ak, sk, ""
        ak, sk = _ci(secret_data, "AccessKeyId"), _ci(secret_data, "AccessKeySecret")
        if ak and sk:
            return ak, sk, _ci(secret_data, "SecurityToken") or ""
    ak, sk = _ci(attributes, "akId"), _ci(attributes, "akSecret")
    if ak and sk:
        return ak, sk, ""
    return None


def oss_endpoint(ctx: SandboxContext, url: str | None) -> str:
    """The sandbox's OSS for any Alibaba endpoint (``oss-cn-beijing[-internal].aliyuncs.com``); loopback
    URLs are used as they are."""
    if url and ("127." in url or "localhost" in url):
        return url if "://" in url else "http://" + url
    return ctx.endpoints.get("oss", "")


def _download_prefix(endpoint: str, creds: tuple[str, str, str], bucket: str, prefix: str, target: Path) -> int:
    import oss2

    auth = oss2.StsAuth(*creds) if creds[2] else oss2.Auth(creds[0], creds[1])
    b = oss2.Bucket(auth, endpoint, bucket, connect_timeout=10)
    count = 0
    for obj in oss2.ObjectIteratorV2(b, prefix=prefix):
        rel = obj.key[len(prefix) :].lstrip("/")
        if not rel:
            continue
        dest = target / rel
        if obj.key.endswith("/"):
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        b.get_object_to_file(obj.key, str(dest))
        count += 1
    return count


async def mount_oss(ctx: SandboxContext, api: Api, pv: Obj, pod_ns: str, target: Path) -> None:
    csi = pv["spec"]["csi"]
    attrs = {str(k): str(v) for k, v in (csi.get("volumeAttributes") or {}).items()}
    pv_name = pv["metadata"]["name"]
    prefix_msg = f'MountVolume.SetUp failed for volume "{pv_name}" : rpc error: code = '
    bucket = _ci(attrs, "bucket")
    if not bucket:
        raise MountError(prefix_msg + "InvalidArgument desc = bucket is empty in volumeAttributes")
    secret_data = None
    ref = csi.get("nodePublishSecretRef")
    if ref:
        secret = await api.get_or_none(SECRETS, ref.get("namespace") or pod_ns, ref.get("name", ""))
        if secret is None:
            raise MountError(
                f'MountVolume.SetUp failed for volume "{pv_name}" : kubernetes.io/csi: '
                f"mounter.SetUpAt failed to get CSI client: fetching NodePublishSecretRef "
                f"{ref.get('namespace') or pod_ns}/{ref.get('name')} failed: secrets "
                f'"{ref.get("name")}" not found'
            )
        secret_data = {k: v.decode(errors="replace") for k, v in secret_bytes(secret).items()}
    creds = oss_credentials(secret_data, attrs)
    if creds is None:
        raise MountError(
            prefix_msg + "InvalidArgument desc = missing access key in node publish secret or "
            "volumeAttributes (akId/akSecret or AccessKeyId/AccessKeySecret)"
        )
    path = (_ci(attrs, "path") or "/").strip("/")
    prefix = path + "/" if path else ""
    endpoint = oss_endpoint(ctx, _ci(attrs, "url"))
    if not endpoint:
        raise MountError(prefix_msg + "Unavailable desc = the OSS endpoint is not reachable")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        await asyncio.to_thread(_download_prefix, endpoint, creds, bucket, prefix, tmp)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        code = getattr(exc, "code", "") or type(exc).__name__
        message = getattr(exc, "message", "") or str(exc)
        raise MountError(
            prefix_msg + f"Internal desc = failed to mount oss bucket {bucket}:/{path} (ossfs: {code}: {message})"
        ) from exc
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


async def _write_projection(api: Api, kind: Kind, ns: str, source: dict[str, Any], target: Path) -> None:
    name = source.get("name") or source.get("secretName") or ""
    obj = await api.get_or_none(kind, ns, name)
    what = "secret" if kind == SECRETS else "configmap"
    if obj is None:
        if source.get("optional"):
            target.mkdir(parents=True, exist_ok=True)
            return
        raise MountError(f'MountVolume.SetUp failed for volume "{source.get("_volume")}" : {what} "{name}" not found')
    data = secret_bytes(obj) if kind == SECRETS else {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    items = source.get("items")
    target.mkdir(parents=True, exist_ok=True)
    for k, v in data.items():
        if items:
            match = next((i for i in items if i.get("key") == k), None)
            if match is None:
                continue
            rel = match.get("path") or k
        else:
            rel = k
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(v)


async def mount_pod_volumes(ctx: SandboxContext, api: Api, pod: Obj, pod_dir: Path) -> dict[str, str]:
    """Set up every volume of ``pod``; returns volume name -> local directory. Raises ``MountError``."""
    ns = pod["metadata"].get("namespace", "default")
    vol_root = pod_dir / "volumes"
    vol_root.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for vol in pod.get("spec", {}).get("volumes") or []:
        name = vol["name"]
        target = vol_root / name
        if "emptyDir" in vol:
            target.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in vol:
            hp = vol["hostPath"]
            target = Path(hp["path"])
            if hp.get("type") in ("DirectoryOrCreate",):
                target.mkdir(parents=True, exist_ok=True)
        elif "configMap" in vol:
            await _write_projection(api, CONFIGMAPS, ns, {**vol["configMap"], "_volume": name}, target)
        elif "secret" in vol:
            await _write_projection(api, SECRETS, ns, {**vol["secret"], "_volume": name}, target)
        elif "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"].get("claimName", "")
            pvc = await api.get_or_none(PVCS, ns, claim)
            if pvc is None:
                raise MountError(
                    f"Unable to attach or mount volumes: unmounted volumes=[{name}]: "
                    f'persistentvolumeclaim "{claim}" not found'
                )
            pv_name = pvc.get("spec", {}).get("volumeName")
            if not pv_name or pvc.get("status", {}).get("phase") != "Bound":
                raise MountError(
                    f"Unable to attach or mount volumes: unmounted volumes=[{name}]: PVC {ns}/{claim} is not bound"
                )
            pv = await api.get_or_none(PVS, "", pv_name)
            if pv is None:
                raise MountError(
                    f"Unable to attach or mount volumes: unmounted volumes=[{name}]: "
                    f'persistentvolume "{pv_name}" not found'
                )
            pspec = pv.get("spec", {})
            if (pspec.get("csi") or {}).get("driver") == OSS_DRIVER:
                await mount_oss(ctx, api, pv, ns, target)
            elif "hostPath" in pspec or "local" in pspec:
                target = Path((pspec.get("hostPath") or pspec.get("local"))["path"])
                target.mkdir(parents=True, exist_ok=True)
            elif "csi" in pspec:
                raise MountError(
                    f'MountVolume.MountDevice failed for volume "{pv_name}" : kubernetes.io/csi: '
                    f"attacher.MountDevice failed to create newCsiDriverClient: driver name "
                    f"{pspec['csi'].get('driver')} not found in the list of registered CSI drivers"
                )
            else:
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{pv_name}" : the sandbox cannot mount '
                    f"this volume source ({', '.join(k for k in pspec if k not in ('capacity', 'accessModes', 'claimRef', 'persistentVolumeReclaimPolicy', 'storageClassName', 'volumeMode', 'mountOptions', 'nodeAffinity'))})"
                )
        else:
            target.mkdir(parents=True, exist_ok=True)  # projected / downwardAPI: an empty directory
        out[name] = str(target)
    return out


def unmount_pod_volumes(pod_dir: Path) -> None:
    shutil.rmtree(pod_dir / "volumes", ignore_errors=True)
