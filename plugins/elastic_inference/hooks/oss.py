"""OSS hook on ``oss2``, with the same credential chain as the CS hook (AK, STS token, RAM role ARN).

oss2 signs with a ``CredentialsProvider``; :class:`_ChainCredentialsProvider` adapts the
``alibabacloud_credentials`` client to it, so an assumed RAM role's temporary key is refreshed for OSS too.
oss2 has no HTTP retries of its own (ref. §2.3): every call here goes through ``hooks.retry``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elastic_inference.exceptions import AlibabaCloudTerminalError
from elastic_inference.hooks import retry
from elastic_inference.hooks.base import AlibabaCloudBaseHook, AlibabaCloudSettings

if TYPE_CHECKING:
    import oss2


class _ExpectedNotFound(logging.Filter):
    """Drops oss2's own INFO line for a 404 (``oss2/api.py`` ``_do``: ``logger.info("Exception: {0}")`` before
    every non-2xx raise). A 404 is how the hook learns an object or bucket is not there yet (first upload, HEAD
    before PUT), not an exception to show; every other status is still logged by oss2 and reported by the hook."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("Exception: ") and "'status': 404" in msg)


def _quiet_expected_404s() -> None:
    oss2_api = logging.getLogger("oss2.api")
    if not any(isinstance(f, _ExpectedNotFound) for f in oss2_api.filters):
        oss2_api.addFilter(_ExpectedNotFound())


_quiet_expected_404s()

DEFAULT_MULTIPART_THRESHOLD = 10 * 1024 * 1024  # oss2.defaults.multipart_threshold
DEFAULT_PART_SIZE = 10 * 1024 * 1024  # oss2.defaults.part_size
CRC_CHUNK = 4 * 1024 * 1024
COPY_MULTIPART_THRESHOLD = 256 * 1024 * 1024  # CopyObject's own limit is 1 GB
COPY_PART_SIZE = 64 * 1024 * 1024


def local_crc64(path: str | os.PathLike[str]) -> int:
    """CRC-64/XZ (ECMA-182) of a file, as OSS reports it in ``x-oss-hash-crc64ecma``."""
    from oss2.utils import Crc64

    crc = Crc64(0)
    with open(path, "rb") as f:
        while chunk := f.read(CRC_CHUNK):
            crc.update(chunk)
    return crc.crc


def _credentials_provider(settings: AlibabaCloudSettings) -> Any:
    import oss2.credentials

    class _ChainCredentialsProvider(oss2.credentials.CredentialsProvider):
        """oss2 asks for credentials on every request; the chain caches and refreshes them."""

        def __init__(self) -> None:
            self._client = settings.credential_client()

        def get_credentials(self) -> oss2.credentials.Credentials:
            cred = self._client.get_credential()
            return oss2.credentials.Credentials(cred.access_key_id, cred.access_key_secret, cred.security_token or "")

    return _ChainCredentialsProvider()


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    crc64: int | None
    etag: str | None


@dataclass(frozen=True)
class CopyResult:
    key: str
    size: int  # bytes copied inside OSS (none through this machine)
    crc64: int | None
    multipart: bool


def _part_info(number: int, etag: str, size: int) -> Any:
    import oss2.models

    return oss2.models.PartInfo(number, etag, size=size)


@dataclass(frozen=True)
class InProgressUpload:
    key: str
    upload_id: str
    initiated: float  # epoch seconds
    last_activity: float = 0.0  # the newest part's time, else ``initiated``
    parts: int = 0


@dataclass(frozen=True)
class UploadResult:
    key: str
    size: int
    bytes_sent: int  # what this call put on the wire (a resumed multipart sends only missing parts)
    resumed_bytes: int  # parts already on the server from an interrupted run
    multipart: bool
    crc64: int | None


class OssHook(AlibabaCloudBaseHook):
    """Buckets and objects in OSS through the ``alibaba_ack`` connection (``extra.oss_endpoint`` overrides).

    :param signature_version: ``"v4"`` (default, what OSS recommends) or ``"v1"``.
    """

    def __init__(
        self, ack_conn_id: str = AlibabaCloudBaseHook.default_conn_name, *, signature_version: str = "v4", **kwargs: Any
    ) -> None:
        super().__init__(ack_conn_id, **kwargs)
        if signature_version not in ("v1", "v4"):
            raise ValueError(f"signature_version must be 'v1' or 'v4', not {signature_version!r}")
        self.signature_version = signature_version

    # -- plumbing -------------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        s = self.settings
        return s.oss_endpoint.url if s.oss_endpoint else f"https://oss-{s.region_id}.aliyuncs.com"

    @cached_property
    def _auth(self) -> Any:
        import oss2

        provider = _credentials_provider(self.settings)
        return oss2.ProviderAuthV4(provider) if self.signature_version == "v4" else oss2.ProviderAuth(provider)

    def get_bucket(self, bucket_name: str) -> oss2.Bucket:
        import oss2

        if not bucket_name:
            raise ValueError("bucket name is empty")
        return oss2.Bucket(self._auth, self.endpoint, bucket_name, region=self.settings.region_id, connect_timeout=30)

    def get_conn(self) -> Any:
        import oss2

        return oss2.Service(self._auth, self.endpoint, region=self.settings.region_id)

    def _call(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return retry.call(fn, *args, policy=self.retry_policy, operation=operation, logger=self.log, **kwargs)

    # -- buckets --------------------------------------------------------------------------------------------
    def bucket_exists(self, bucket_name: str) -> bool:

        try:
            self._call("GetBucketInfo", self.get_bucket(bucket_name).get_bucket_info)
        except AlibabaCloudTerminalError as e:
            if e.code == "NoSuchBucket":
                return False
            raise
        return True

    def create_bucket(self, bucket_name: str, acl: str = "private") -> None:
        """PutBucket; an existing bucket we own is fine (idempotent)."""
        import oss2

        if acl not in (oss2.BUCKET_ACL_PRIVATE, oss2.BUCKET_ACL_PUBLIC_READ, oss2.BUCKET_ACL_PUBLIC_READ_WRITE):
            raise ValueError(f"bucket acl {acl!r} is not one of private, public-read, public-read-write")
        try:
            self._call("PutBucket", self.get_bucket(bucket_name).create_bucket, acl)
        except AlibabaCloudTerminalError as e:
            if e.code != "BucketAlreadyExists" or not self.bucket_exists(bucket_name):
                raise

    # -- objects --------------------------------------------------------------------------------------------
    def head_object(self, bucket_name: str, key: str) -> RemoteObject | None:
        """HEAD the object: size, CRC64 and ETag, or None when it does not exist."""
        try:
            r = self._call("HeadObject", self.get_bucket(bucket_name).head_object, key)
        except AlibabaCloudTerminalError as e:
            if e.status_code == 404 and e.code in ("NoSuchKey", ""):
                return None
            raise
        return RemoteObject(key=key, size=int(r.content_length or 0), crc64=r.server_crc, etag=r.etag)

    def list_objects(self, bucket_name: str, prefix: str = "", max_objects: int = 100_000) -> Iterator[RemoteObject]:
        """Objects under ``prefix`` (ListObjectsV2, paged; bounded by ``max_objects``)."""
        bucket = self.get_bucket(bucket_name)
        token = ""
        seen = 0
        while True:
            result = self._call(
                "ListObjectsV2", bucket.list_objects_v2, prefix=prefix, continuation_token=token, max_keys=1000
            )
            for obj in result.object_list:
                yield RemoteObject(key=obj.key, size=obj.size, crc64=None, etag=obj.etag)
                seen += 1
                if seen >= max_objects:
                    return
            if not result.is_truncated:
                return
            token = result.next_continuation_token

    def list_prefixes(self, bucket_name: str, prefix: str, max_prefixes: int = 100_000) -> list[str]:
        """The "folders" right under ``prefix``: ListObjects v1 with ``delimiter='/'`` (paged by ``marker``),
        its CommonPrefixes; each is folded once by OSS across pages."""
        bucket = self.get_bucket(bucket_name)
        out: list[str] = []
        marker = ""
        for _ in range(max(1, max_prefixes // 1000 + 1)):
            r = self._call(
                "ListObjects", bucket.list_objects, prefix=prefix, delimiter="/", marker=marker, max_keys=1000
            )
            out.extend(r.prefix_list)
            if not r.is_truncated or len(out) >= max_prefixes:
                break
            marker = r.next_marker
        return out[:max_prefixes]

    def copy_object(
        self,
        source_bucket: str,
        source_key: str,
        bucket_name: str,
        key: str,
        *,
        multipart_threshold: int = COPY_MULTIPART_THRESHOLD,
        part_size: int = COPY_PART_SIZE,
    ) -> CopyResult:
        """Server-side copy, CRC-checked: nothing passes through this machine.

        Below ``multipart_threshold`` one CopyObject; above it (CopyObject takes at most 1 GB, OSS API reference
        "CopyObject") Initiate + UploadPartCopy per ``part_size`` range + Complete ("UploadPartCopy", doc 31994).
        Every request pins the source's ETag (``x-oss-copy-source-if-match``), so a source rewritten mid-copy fails
        with 412 instead of mixing two versions; the copy's ``x-oss-hash-crc64ecma`` must equal the source's (OSS
        computes it for a completed multipart object too), else the copy is deleted and an error raised.
        """
        src = self.head_object(source_bucket, source_key)
        if src is None:
            raise AlibabaCloudTerminalError(
                f"oss://{source_bucket}/{source_key} does not exist (it was removed after it was listed)",
                code="NoSuchKey",
                status_code=404,
            )
        pin = {"x-oss-copy-source-if-match": src.etag} if src.etag else {}
        target = self.get_bucket(bucket_name)
        multipart = src.size >= multipart_threshold
        if not multipart:
            self._call("CopyObject", target.copy_object, source_bucket, source_key, key, headers=pin)
        else:
            upload_id = self._call("InitiateMultipartUpload", target.init_multipart_upload, key).upload_id
            try:
                parts = []
                for number, start in enumerate(range(0, src.size, part_size), start=1):
                    end = min(start + part_size, src.size) - 1
                    r = self._call(
                        "UploadPartCopy",
                        target.upload_part_copy,
                        source_bucket,
                        source_key,
                        (start, end),
                        key,
                        upload_id,
                        number,
                        headers=pin,
                    )
                    parts.append(_part_info(number, r.etag, end - start + 1))
                self._call("CompleteMultipartUpload", target.complete_multipart_upload, key, upload_id, parts)
            except BaseException:
                try:
                    target.abort_multipart_upload(key, upload_id)
                except Exception:  # noqa: BLE001 - the copy's own error is the one to raise
                    self.log.warning(
                        "could not abort the multipart copy %s of oss://%s/%s", upload_id, bucket_name, key
                    )
                raise
        dst = self.head_object(bucket_name, key)
        if dst is None or dst.size != src.size or (src.crc64 is not None and dst.crc64 != src.crc64):
            self.delete_object(bucket_name, key)
            raise AlibabaCloudTerminalError(
                f"copy of oss://{source_bucket}/{source_key} to oss://{bucket_name}/{key} does not match its source"
                f" (size {src.size} vs {dst.size if dst else None}, CRC64 {src.crc64} vs {dst.crc64 if dst else None});"
                " the copy was deleted: run the task again",
                code="CrcMismatch",
            )
        return CopyResult(key=key, size=src.size, crc64=dst.crc64, multipart=multipart)

    def put_object(self, bucket_name: str, key: str, data: bytes | str) -> Any:
        return self._call("PutObject", self.get_bucket(bucket_name).put_object, key, data)

    def get_object(self, bucket_name: str, key: str) -> bytes:
        return self._call("GetObject", lambda: self.get_bucket(bucket_name).get_object(key).read())

    def delete_object(self, bucket_name: str, key: str) -> None:
        self._call("DeleteObject", self.get_bucket(bucket_name).delete_object, key)

    def checkpoint_store(self, checkpoint_dir: str | os.PathLike[str]) -> Any:
        import oss2

        root = Path(checkpoint_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return oss2.ResumableStore(root=str(root), dir="oss-upload")

    def pending_multipart_bytes(
        self, bucket_name: str, key: str, filename: str | os.PathLike[str], checkpoint_dir: str | os.PathLike[str]
    ) -> int:
        """Bytes of ``filename`` already on the server as parts of an interrupted resumable upload (0 if none)."""
        store = self.checkpoint_store(checkpoint_dir)
        record = store.get(store.make_store_key(bucket_name, key, os.path.abspath(filename)))
        if not record or not record.get("upload_id"):
            return 0
        bucket = self.get_bucket(bucket_name)
        try:
            total, marker = 0, ""
            for _ in range(10_000):  # 10 000 parts is OSS's maximum per upload
                r = self._call("ListParts", bucket.list_parts, key, record["upload_id"], marker=marker)
                total += sum(p.size for p in r.parts)
                if not r.is_truncated:
                    break
                marker = r.next_marker
            return total
        except AlibabaCloudTerminalError as e:
            if e.code == "NoSuchUpload":
                return 0  # oss2 will discard the stale record and start over
            raise

    def in_progress_uploads(self, bucket_name: str, prefix: str) -> list[InProgressUpload]:
        """Multipart uploads under ``prefix`` that were initiated and neither completed nor aborted
        (ListMultipartUploads, paged), each with when it last made progress (its newest part, else initiation)."""
        bucket = self.get_bucket(bucket_name)
        out: list[InProgressUpload] = []
        key_marker = upload_marker = ""
        for _ in range(1000):
            page = self._call(
                "ListMultipartUploads",
                bucket.list_multipart_uploads,
                prefix=prefix,
                key_marker=key_marker,
                upload_id_marker=upload_marker,
                max_uploads=1000,
            )
            for u in page.upload_list:
                out.append(InProgressUpload(u.key, u.upload_id, float(u.initiation_date or 0)))
            if not page.is_truncated:
                break
            key_marker, upload_marker = page.next_key_marker, page.next_upload_id_marker
        for i, u in enumerate(out):
            try:
                parts = self._call("ListParts", bucket.list_parts, u.key, u.upload_id, max_parts=1000)
            except AlibabaCloudTerminalError as e:
                if e.code == "NoSuchUpload":
                    continue
                raise
            newest = max((float(pt.last_modified or 0) for pt in parts.parts), default=0.0)
            out[i] = InProgressUpload(
                u.key, u.upload_id, u.initiated, last_activity=max(u.initiated, newest), parts=len(parts.parts)
            )
        return out

    def abort_stale_uploads(
        self, bucket_name: str, prefix: str, keys: set[str], *, idle_seconds: float, now: float | None = None
    ) -> list[InProgressUpload]:
        """Abort the in-progress multipart uploads of ``keys`` (under ``prefix``) that made no progress for
        ``idle_seconds``: what a killed worker left behind (its checkpoint stays on that worker, so a retry elsewhere
        starts a new upload and the old parts would be stored - and billed - until a lifecycle rule removes them).
        An upload still sending parts (a concurrent run) is left alone. Returns what was aborted."""
        import time

        now = time.time() if now is None else now
        aborted = []
        for u in self.in_progress_uploads(bucket_name, prefix):
            if u.key not in keys or now - u.last_activity < idle_seconds:
                continue
            try:
                self._call(
                    "AbortMultipartUpload", self.get_bucket(bucket_name).abort_multipart_upload, u.key, u.upload_id
                )
            except AlibabaCloudTerminalError as e:
                if e.code != "NoSuchUpload":  # completed or aborted meanwhile
                    raise
                continue
            aborted.append(u)
        return aborted

    def upload_file(
        self,
        bucket_name: str,
        key: str,
        filename: str | os.PathLike[str],
        *,
        checkpoint_dir: str | os.PathLike[str],
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        progress_callback: Callable[[int, int | None], None] | None = None,
        num_threads: int = 1,
    ) -> UploadResult:
        """Resumable upload: a plain PUT below ``multipart_threshold``, multipart above it with a checkpoint
        under ``checkpoint_dir``, so an interrupted upload sends only the missing parts next time.

        The object's CRC64 is checked by oss2 against the server's ``x-oss-hash-crc64ecma``.
        """
        import oss2

        filename = os.path.abspath(filename)
        size = os.path.getsize(filename)
        multipart = size >= multipart_threshold
        resumed = self.pending_multipart_bytes(bucket_name, key, filename, checkpoint_dir) if multipart else 0
        result = self._call(
            "ResumableUpload",
            oss2.resumable_upload,
            self.get_bucket(bucket_name),
            key,
            filename,
            store=self.checkpoint_store(checkpoint_dir),
            multipart_threshold=multipart_threshold,
            part_size=part_size,
            progress_callback=progress_callback,
            num_threads=num_threads,
        )
        return UploadResult(
            key=key,
            size=size,
            bytes_sent=size - resumed,
            resumed_bytes=resumed,
            multipart=multipart,
            crc64=getattr(result, "crc", None),
        )

    def test_connection(self) -> tuple[bool, str]:
        """ListBuckets, signed with the connection's credentials."""
        try:
            result = self._call("ListBuckets", self.get_conn().list_buckets, max_keys=10)
        except Exception as e:
            return False, str(e)
        return True, f"Connected to {self.endpoint}: {len(result.buckets)} bucket(s) visible"
