"""Volumes: the PV/PVC binder (kube-controller-manager's persistentvolume controller) and the kubelet's
volume mounts, including the Alibaba Cloud OSS CSI driver ``ossplugin.csi.alibabacloud.com``.

Binding (pkg/controller/volume/persistentvolume): a Pending claim binds to the smallest Available PV
whose storageClassName equals the claim's ("" and unset both mean "no class"), whose accessModes include
the claim's, whose capacity covers the request and whose labels match the claim's selector (or the
PV the claim names in ``volumeName``). Both sides get the bind annotations and ``Bound`` phases; a claim
whose PV disappears becomes ``Lost``; a PV whose claim is deleted becomes ``Released`` (Retain) or is
deleted (Delete).

Mounting an OSS CSI volume: on ACK the node plugin runs ossfs, a FUSE file system over ``bucket/path``; with
the seed's ``-o max_stat_cache_size=0`` every stat goes to OSS, so objects written to OSS after the mount show
up in running pods at once, and deleted ones disappear. The sandbox has no FUSE: an ``OssMirror`` per pod
volume copies the objects under ``bucket/path`` into the pod's volume directory at mount time, then keeps it in
step with the bucket — every ``SYNC_INTERVAL`` (0.5 s real) one ListObjectsV2 listing (shared by every pod
mounting the same bucket/path with the same key), downloading only objects whose ETag changed and removing
local files whose object is gone. Files are written to a temporary name and renamed, so a reader never sees a
half-written file; the files of a directory that is new in a round (e.g. a model version ``2/``) are staged
under ``.ossfs-staging`` and appear together, ``saved_model.pb`` last.

Read-only: the mount is read-only when the PV's ``csi.readOnly``, the pod volume's
``persistentVolumeClaim.readOnly`` or a ``ReadOnlyMany``-only access mode says so (the CSI plugin mounts ossfs
with ``-o ro`` for ``MULTI_NODE_READER_ONLY``), and for a container whose ``volumeMount.readOnly`` is true. The
view is then a read-only bind mount of the mirror (``mount --bind`` + ``remount,ro``, as the kubelet does for a
read-only volumeMount): a write fails with EROFS "Read-only file system" as in a container. Where the daemon
may not mount (not root / no CAP_SYS_ADMIN) the files are made mode 0444 instead (refused to non-root
writers only). Bind mounts are undone on unmount, on daemon stop, and leftovers of a killed daemon under the
state directory are detached at the next start. A read-write mount does not write back to OSS (files a
container creates stay local; ossfs would upload them).

The credentials are the volume's own, resolved as the CSI node plugin does (alibaba-cloud-csi-driver
``pkg/oss/utils.go``, reference §3): the Secret of ``nodePublishSecretRef`` — legacy ``akId``/``akSecret``
(both or neither) first, then ``AccessKeyId``/``AccessKeySecret`` (+``SecurityToken``), keys matched
case-insensitively — else inline ``akId``/``akSecret`` volumeAttributes; read through the OSS stand-in's
HTTP API with oss2. A refused credential leaves the pod ``ContainerCreating`` with ``FailedMount`` events, as
on a real node.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import logging
import os
import secrets as _secrets
import shutil
import time
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


SYNC_INTERVAL = 0.5  # real seconds between listings of a mounted bucket/path (ossfs stats every access)
STAGING = ".ossfs-staging"
_MIRRORS: dict[str, list[OssMirror]] = {}  # pod volumes dir -> its mirrors
_BINDS: dict[str, list[str]] = {}  # pod volumes dir -> read-only bind mounts made under it
_LISTERS: dict[tuple[str, str, str, str], _Lister] = {}
_reaped: set[str] = set()


def _bucket(endpoint: str, creds: tuple[str, str, str], bucket: str) -> Any:
    import oss2

    auth = oss2.StsAuth(*creds) if creds[2] else oss2.Auth(creds[0], creds[1])
    return oss2.Bucket(auth, endpoint, bucket, connect_timeout=10)


def _list_prefix(b: Any, prefix: str) -> dict[str, str]:
    """``relative path -> ETag`` of every object under ``prefix`` (directory markers map to "/")."""
    import oss2

    out: dict[str, str] = {}
    for obj in oss2.ObjectIteratorV2(b, prefix=prefix):
        rel = obj.key[len(prefix) :].lstrip("/")
        if rel:
            out[rel] = "/" if obj.key.endswith("/") else obj.etag
    return out


class _Lister:
    """One listing per SYNC_INTERVAL for every mirror of the same bucket/path and key."""

    def __init__(self, bucket: Any, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.at = 0.0
        self.listing: dict[str, str] | None = None
        self.lock = asyncio.Lock()

    async def get(self) -> dict[str, str]:
        async with self.lock:
            if self.listing is None or time.monotonic() - self.at >= SYNC_INTERVAL * 0.9:
                self.listing = await asyncio.to_thread(_list_prefix, self.bucket, self.prefix)
                self.at = time.monotonic()
            return self.listing


def _sync_order(rel: str) -> tuple[bool, str]:
    # saved_model.pb last: TF Serving loads a version once it sees its .pb
    return (rel.rsplit("/", 1)[-1] in ("saved_model.pb", "saved_model.pbtxt"), rel)


class OssMirror:
    """Keeps ``root`` equal to the objects under ``bucket/prefix`` (what ossfs shows its readers)."""

    def __init__(self, bucket: Any, prefix: str, root: Path, read_only: bool) -> None:
        self.bucket, self.prefix, self.root, self.read_only = bucket, prefix, root, read_only
        self.known: dict[str, str] = {}  # rel -> ETag of the local copy
        self.task: asyncio.Task[None] | None = None
        self.rounds = 0

    def apply(self, listing: dict[str, str]) -> int:
        """Bring the directory up to ``listing`` (blocking; run in a thread). Returns files changed."""
        changed = 0
        staging = self.root / STAGING
        staged_tops: set[str] = set()
        for rel in sorted((r for r, e in listing.items() if self.known.get(r) != e), key=_sync_order):
            etag = listing[rel]
            top = rel.split("/", 1)[0]
            fresh_top = "/" in rel and (top in staged_tops or not (self.root / top).exists())
            base = staging if fresh_top else self.root
            if fresh_top:
                staged_tops.add(top)
            dest = base / rel
            if etag == "/":
                dest.mkdir(parents=True, exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.ossfs-{_secrets.token_hex(4)}")
                self.bucket.get_object_to_file(self.prefix + rel, str(tmp))
                if self.read_only:
                    os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
            self.known[rel] = etag
            changed += 1
        for top in sorted(staged_tops):
            target = self.root / top
            if target.exists():  # appeared meanwhile (another round): merge file by file
                for src in sorted((staging / top).rglob("*"), key=lambda q: _sync_order(str(q))):
                    if src.is_file():
                        dest = target / src.relative_to(staging / top)
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(src, dest)
            else:
                os.replace(staging / top, target)
        if staged_tops:
            shutil.rmtree(staging, ignore_errors=True)
        for rel in [r for r in self.known if r not in listing]:
            path = self.root / rel
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            del self.known[rel]
            changed += 1
            parent = path.parent
            while parent != self.root and parent.is_relative_to(self.root):
                try:
                    parent.rmdir()  # only when empty: ossfs shows no directory without objects under it
                except OSError:
                    break
                parent = parent.parent
        return changed

    async def run(self, lister: _Lister) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                listing = await lister.get()
                if any(self.known.get(r) != e for r, e in listing.items()) or len(listing) != len(self.known):
                    await asyncio.to_thread(self.apply, listing)
                self.rounds += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - ossfs keeps what it has when OSS does not answer
                log.debug("oss mirror %s: %s", self.root, exc)


# --- read-only views (bind mounts) ---------------------------------------------------------------------------
MS_RDONLY, MS_REMOUNT, MS_BIND, MNT_DETACH = 1, 32, 4096, 2
_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def bind_read_only(src: Path, dst: Path) -> bool:
    """``mount --bind src dst`` then ``mount -o remount,bind,ro dst``; False where the daemon may not mount."""
    if os.geteuid() != 0:
        return False
    dst.mkdir(parents=True, exist_ok=True)
    libc = _lib()
    if libc.mount(str(src).encode(), str(dst).encode(), None, MS_BIND, None) != 0:
        log.debug("bind mount of %s refused: %s", dst, os.strerror(ctypes.get_errno()))
        return False
    if libc.mount(None, str(dst).encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None) != 0:
        log.debug("read-only remount of %s refused: %s", dst, os.strerror(ctypes.get_errno()))
        libc.umount2(str(dst).encode(), MNT_DETACH)
        return False
    return True


def _detach(path: str) -> None:
    _lib().umount2(path.encode(), MNT_DETACH)


def _mount_points_under(root: Path) -> list[str]:
    prefix = str(root.resolve()).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[4].replace("\\040", " ") for line in lines if len(line.split()) > 4]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def reap_stale_mounts(state_dir: Path) -> int:
    """Detach read-only views a killed daemon left under its state directory (once per process)."""
    key = str(state_dir)
    if key in _reaped or os.geteuid() != 0:
        return 0
    _reaped.add(key)
    points = _mount_points_under(state_dir)
    for point in points:
        _detach(point)
    return len(points)


def _chmod_read_only(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with contextlib.suppress(OSError):
                os.chmod(path, 0o444)


def read_only_view(pod_dir: Path, name: str, local: str) -> str:
    """The directory a container with ``volumeMount.readOnly`` sees for volume ``name`` backed by ``local``."""
    vol_root = pod_dir / "volumes"
    if local in _BINDS.get(str(vol_root), []):
        return local  # the volume itself is a read-only view
    view = vol_root / f".ro-{name}"
    if str(view) in _BINDS.get(str(vol_root), []):
        return str(view)
    if not Path(local).is_relative_to(vol_root):
        return local  # hostPath / local PV: left as it is
    if bind_read_only(Path(local), view):
        _BINDS.setdefault(str(vol_root), []).append(str(view))
        return str(view)
    return local


def _pv_read_only(pv: Obj, pvc: Obj, pod_volume: dict[str, Any]) -> bool:
    modes = set(pvc.get("spec", {}).get("accessModes") or pv.get("spec", {}).get("accessModes") or [])
    return bool(
        (pv.get("spec", {}).get("csi") or {}).get("readOnly")
        or (pod_volume.get("persistentVolumeClaim") or {}).get("readOnly")
        or modes == {"ReadOnlyMany"}
    )


async def mount_oss(ctx: SandboxContext, api: Api, pv: Obj, pod_ns: str, target: Path, read_only: bool = False) -> None:
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
    vol_root = target.parent
    mirror_dir = vol_root / f".{target.name}.oss" if read_only else target
    tmp = mirror_dir.with_name(mirror_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    key = (endpoint, bucket, prefix, hashlib.sha256("\0".join(creds).encode()).hexdigest())  # the whole key
    lister = _LISTERS.get(key)
    if lister is None:
        lister = _LISTERS[key] = _Lister(_bucket(endpoint, creds, bucket), prefix)
    mirror = OssMirror(lister.bucket, prefix, tmp, read_only)
    try:
        listing = await asyncio.to_thread(_list_prefix, lister.bucket, prefix)
        await asyncio.to_thread(mirror.apply, listing)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _LISTERS.pop(key, None)  # a refused key is not reused
        code = getattr(exc, "code", "") or type(exc).__name__
        message = getattr(exc, "message", "") or str(exc)
        raise MountError(
            prefix_msg + f"Internal desc = failed to mount oss bucket {bucket}:/{path} (ossfs: {code}: {message})"
        ) from exc
    shutil.rmtree(mirror_dir, ignore_errors=True)
    tmp.rename(mirror_dir)
    mirror.root = mirror_dir
    if read_only:
        if bind_read_only(mirror_dir, target):
            _BINDS.setdefault(str(vol_root), []).append(str(target))
        else:
            _chmod_read_only(mirror_dir)
            shutil.rmtree(target, ignore_errors=True)
            target.symlink_to(mirror_dir.name)
    mirror.task = asyncio.get_running_loop().create_task(mirror.run(lister), name=f"ossfs-{target}")
    _MIRRORS.setdefault(str(vol_root), []).append(mirror)


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
    reap_stale_mounts(ctx.state_dir)
    release_pod_volumes(pod_dir)  # a mount attempt that failed half way
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
                await mount_oss(ctx, api, pv, ns, target, read_only=_pv_read_only(pv, pvc, vol))
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


def release_pod_volumes(pod_dir: Path) -> None:
    """Stop the pod's OSS mirrors and detach its read-only views (the files stay)."""
    vol_root = str(pod_dir / "volumes")
    for mirror in _MIRRORS.pop(vol_root, []):
        if mirror.task is not None:
            mirror.task.cancel()
    for point in reversed(_BINDS.pop(vol_root, [])):
        _detach(point)


def unmount_pod_volumes(pod_dir: Path) -> None:
    release_pod_volumes(pod_dir)
    shutil.rmtree(pod_dir / "volumes", ignore_errors=True)
