"""OSS state on disk: buckets, objects and multipart uploads under ``ctx.service_dir("oss")``.

Layout (durable across down/up; every write is temp-file + rename)::

    buckets/<bucket>/bucket.json
    buckets/<bucket>/objects/<sha256(key)>.data | .json     (meta: key, size, etag, crc64, ...)
    uploads/<upload_id>/upload.json, <part>.data, <part>.json

An in-memory index (rebuilt from the ``.json`` files at start) serves listings. No HTTP here; errors
are ``OssError`` with OSS's codes. ``object_path(bucket, key)`` is public so the sandbox's OSS CSI
volume can expose objects as files.

Object types as OSS reports them in ``x-oss-object-type`` / ListObjects ``Type``: ``Normal`` (PutObject,
CopyObject), ``Multipart`` (CompleteMultipartUpload), ``Appendable`` (AppendObject: ``position`` must equal the
current length, else 409 PositionNotEqualToLength; appending to any other type is 409 ObjectNotAppendable —
OSS error pages 0026-00000016 / 0026-00000017) and ``Symlink`` (PutSymlink: a zero-byte object whose
``symlink_target`` names another key of the bucket; ``follow`` resolves it, 404 SymlinkTargetNotExist when the
target is gone). Upload IDs start with the initiation time in hex, so ordering by (key, upload id) — how
ListMultipartUploads pages with key-marker / upload-id-marker — is also ordering by initiation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ack_sandbox.oss.crc64 import Crc64
from ack_sandbox.oss.errors import OssError, invalid_argument, no_such_bucket, no_such_key, no_such_upload

MIN_PART_SIZE = 100 * 1024  # OSS: every part but the last must be >= 100 KB
MAX_PARTS = 10000
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass
class ObjectMeta:
    key: str
    size: int
    etag: str  # quoted upper-case hex, "...-N" for multipart
    crc64: int
    last_modified: float
    content_type: str = "application/octet-stream"
    object_type: str = "Normal"  # Normal | Multipart
    storage_class: str = "Standard"
    user_meta: dict[str, str] = field(default_factory=dict)
    content_md5: str = ""  # base64, simple uploads only
    symlink_target: str = ""  # object_type Symlink only


@dataclass
class BucketMeta:
    name: str
    created: float
    location: str
    acl: str = "private"
    storage_class: str = "Standard"


@dataclass
class PartMeta:
    number: int
    size: int
    etag: str
    crc64: int
    last_modified: float


@dataclass
class Upload:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    content_type: str = "application/octet-stream"
    user_meta: dict[str, str] = field(default_factory=dict)


def _atomic_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


async def _receive(chunks: AsyncIterator[bytes], tmp: Path) -> tuple[Any, Crc64, int]:
    """Stream a request body to ``tmp``, computing its MD5 and CRC-64 on the way; (md5, crc, size)."""
    md5, crc, size = hashlib.md5(), Crc64(), 0
    with open(tmp, "wb") as f:
        async for chunk in chunks:
            f.write(chunk)
            md5.update(chunk)
            crc.update(chunk)
            size += len(chunk)
    return md5, crc, size


async def file_chunks(path: Path, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
    """The bytes ``start..end`` (inclusive; ``end=None``: to the end) of a file, in 1 MiB chunks."""
    with open(path, "rb") as f:
        f.seek(start)
        left = None if end is None else end - start + 1
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""


def new_upload_id() -> str:
    """32 upper-case hex characters, the first 16 the initiation time in ns (ordered like OSS's own IDs)."""
    return f"{time.time_ns():016X}{secrets.token_hex(8).upper()}"


def _key_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_key(key: str) -> None:
    if not key or len(key.encode()) > 1023 or key.startswith(("/", "\\")):
        raise OssError(
            400,
            "InvalidObjectName",
            "The specified object is not valid: a key is 1-1023 bytes and does not start with '/' or '\\'.",
            "0016-00000005",
            Key=key,
        )


class OssStore:
    def __init__(self, root: Path, region: str) -> None:
        self.root = root
        self.region = region
        self.buckets: dict[str, BucketMeta] = {}
        self.objects: dict[str, dict[str, ObjectMeta]] = {}
        self.uploads: dict[str, Upload] = {}
        self.parts: dict[str, dict[int, PartMeta]] = {}
        (root / "buckets").mkdir(parents=True, exist_ok=True)
        (root / "uploads").mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        for bdir in sorted((self.root / "buckets").iterdir()):
            meta = bdir / "bucket.json"
            if not meta.exists():
                continue
            bucket = BucketMeta(**json.loads(meta.read_text()))
            self.buckets[bucket.name] = bucket
            objs: dict[str, ObjectMeta] = {}
            for f in (bdir / "objects").glob("*.json"):
                om = ObjectMeta(**json.loads(f.read_text()))
                objs[om.key] = om
            self.objects[bucket.name] = objs
        for udir in (self.root / "uploads").iterdir():
            meta = udir / "upload.json"
            if not meta.exists():
                continue
            up = Upload(**json.loads(meta.read_text()))
            self.uploads[up.upload_id] = up
            self.parts[up.upload_id] = {
                p.number: p for p in (PartMeta(**json.loads(f.read_text())) for f in udir.glob("part-*.json"))
            }

    # ------------------------------------------------------------------ buckets
    def _bdir(self, bucket: str) -> Path:
        return self.root / "buckets" / bucket

    def bucket(self, name: str) -> BucketMeta:
        b = self.buckets.get(name)
        if b is None:
            raise no_such_bucket(name)
        return b

    def create_bucket(self, name: str, acl: str = "private", storage_class: str = "Standard") -> BucketMeta:
        if not _BUCKET_RE.match(name):
            raise OssError(
                400,
                "InvalidBucketName",
                "The specified bucket is not valid: 3-63 characters, "
                "lower-case letters, digits and '-', starting and ending with a letter or digit.",
                "0015-00000001",
                BucketName=name,
            )
        if name in self.buckets:
            raise OssError(
                409,
                "BucketAlreadyExists",
                "The requested bucket name is not available. The "
                "bucket namespace is shared by all users of the system. Please select a different "
                "name and try again.",
                "0015-00000104",
                BucketName=name,
            )
        if acl not in ("private", "public-read", "public-read-write"):
            raise invalid_argument("x-oss-acl", acl, "no such bucket access control exists")
        bucket = BucketMeta(
            name=name, created=time.time(), location=f"oss-{self.region}", acl=acl, storage_class=storage_class
        )
        (self._bdir(name) / "objects").mkdir(parents=True, exist_ok=True)
        _atomic_json(self._bdir(name) / "bucket.json", asdict(bucket))
        self.buckets[name] = bucket
        self.objects[name] = {}
        return bucket

    def delete_bucket(self, name: str) -> None:
        self.bucket(name)
        if self.objects[name] or any(u.bucket == name for u in self.uploads.values()):
            raise OssError(
                409, "BucketNotEmpty", "The bucket you tried to delete is not empty.", "0015-00000301", BucketName=name
            )
        shutil.rmtree(self._bdir(name), ignore_errors=True)
        del self.buckets[name]
        del self.objects[name]

    def list_buckets(self, prefix: str = "") -> list[BucketMeta]:
        return [b for n, b in sorted(self.buckets.items()) if n.startswith(prefix)]

    # ------------------------------------------------------------------ objects
    def object_path(self, bucket: str, key: str) -> Path:
        return self._bdir(bucket) / "objects" / (_key_name(key) + ".data")

    def head(self, bucket: str, key: str) -> ObjectMeta:
        self.bucket(bucket)
        meta = self.objects[bucket].get(key)
        if meta is None:
            raise no_such_key(key)
        return meta

    async def put(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str | None,
        content_md5: str | None,
        user_meta: dict[str, str],
        forbid_overwrite: bool = False,
    ) -> ObjectMeta:
        self.bucket(bucket)
        check_key(key)
        if forbid_overwrite and key in self.objects[bucket]:
            raise OssError(
                409,
                "FileAlreadyExists",
                "The object you specified already exists and can not be overwritten.",
                "0026-00000002",
                Key=key,
            )
        path = self.object_path(bucket, key)
        tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
        try:
            md5, crc, size = await _receive(chunks, tmp)
            digest_b64 = base64.b64encode(md5.digest()).decode()
            if content_md5 is not None and content_md5 != digest_b64:
                raise OssError(
                    400,
                    "InvalidDigest",
                    "The Content-MD5 you specified is not valid.",
                    "0016-00000402",
                    CalculatedDigest=digest_b64,
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        meta = ObjectMeta(
            key=key,
            size=size,
            etag=f'"{md5.hexdigest().upper()}"',
            crc64=crc.value,
            last_modified=time.time(),
            content_type=content_type or "application/octet-stream",
            user_meta=user_meta,
            content_md5=digest_b64,
        )
        _atomic_json(path.with_suffix(".json"), asdict(meta))
        self.objects[bucket][key] = meta
        return meta

    def delete(self, bucket: str, key: str) -> None:
        self.bucket(bucket)
        if self.objects[bucket].pop(key, None) is not None:
            path = self.object_path(bucket, key)
            path.with_suffix(".json").unlink(missing_ok=True)
            path.unlink(missing_ok=True)

    def delete_many(self, bucket: str, keys: list[str]) -> list[str]:
        """DeleteMultipleObjects: every key is reported deleted, whether it existed or not (as OSS does)."""
        self.bucket(bucket)
        for key in keys:
            self.delete(bucket, key)
        return keys

    async def append(
        self,
        bucket: str,
        key: str,
        position: int,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str | None,
        user_meta: dict[str, str],
    ) -> ObjectMeta:
        """AppendObject: position 0 creates an Appendable object; later appends must give its current length."""
        self.bucket(bucket)
        check_key(key)
        current = self.objects[bucket].get(key)
        if current is not None and current.object_type != "Appendable":
            raise OssError(
                409,
                "ObjectNotAppendable",
                "The object is not appendable",
                "0026-00000017",
                Key=key,
            )
        length = current.size if current is not None else 0
        if position != length:
            raise OssError(
                409,
                "PositionNotEqualToLength",
                "Position is not equal to file length",
                "0026-00000016",
                headers={"x-oss-next-append-position": str(length)},
                Key=key,
            )
        path = self.object_path(bucket, key)
        tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
        try:
            if current is not None:
                shutil.copyfile(path, tmp)
            crc, size = Crc64(current.crc64 if current is not None else 0), length
            with open(tmp, "ab") as f:
                async for chunk in chunks:
                    f.write(chunk)
                    crc.update(chunk)
                    size += len(chunk)
            md5 = hashlib.md5()
            with open(tmp, "rb") as f:
                while block := f.read(1 << 20):
                    md5.update(block)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        meta = ObjectMeta(
            key=key,
            size=size,
            etag=f'"{md5.hexdigest().upper()}"',
            crc64=crc.value,
            last_modified=time.time(),
            # The first append sets the type and metadata; later appends keep them.
            content_type=current.content_type if current else (content_type or "application/octet-stream"),
            object_type="Appendable",
            user_meta=current.user_meta if current else user_meta,
        )
        _atomic_json(path.with_suffix(".json"), asdict(meta))
        self.objects[bucket][key] = meta
        return meta

    def put_symlink(
        self, bucket: str, key: str, target: str, *, user_meta: dict[str, str], forbid_overwrite: bool = False
    ) -> ObjectMeta:
        self.bucket(bucket)
        check_key(key)
        check_key(target)
        if forbid_overwrite and key in self.objects[bucket]:
            raise OssError(
                409,
                "FileAlreadyExists",
                "The object you specified already exists and can not be overwritten.",
                "0026-00000002",
                Key=key,
            )
        path = self.object_path(bucket, key)
        path.write_bytes(b"")  # a symlink has no data; an empty file keeps object_path() readable
        meta = ObjectMeta(
            key=key,
            size=0,
            etag=f'"{hashlib.md5(target.encode()).hexdigest().upper()}"',
            crc64=0,
            last_modified=time.time(),
            object_type="Symlink",
            user_meta=user_meta,
            symlink_target=target,
        )
        _atomic_json(path.with_suffix(".json"), asdict(meta))
        self.objects[bucket][key] = meta
        return meta

    def symlink(self, bucket: str, key: str) -> ObjectMeta:
        """GetSymlink: the symlink's own meta; 400 NotSymlink for any other object."""
        meta = self.head(bucket, key)
        if meta.object_type != "Symlink":
            raise OssError(400, "NotSymlink", "The specified object is not a symlink.", "0026-00000011", Key=key)
        return meta

    def follow(self, bucket: str, key: str) -> tuple[ObjectMeta, str]:
        """The meta and key of what GET/HEAD ``key`` serves: a symlink's target (one level, as OSS), else itself."""
        meta = self.head(bucket, key)
        if meta.object_type != "Symlink":
            return meta, key
        target = self.objects[bucket].get(meta.symlink_target)
        if target is None or target.object_type == "Symlink":
            raise OssError(
                404,
                "SymlinkTargetNotExist",
                "The symlink target object does not exist",
                "0026-00000010",
                SymlinkTarget=meta.symlink_target,
            )
        return target, meta.symlink_target

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        *,
        replace_meta: dict[str, str] | None,
        content_type: str | None,
    ) -> ObjectMeta:
        """CopyObject: the bytes and (COPY directive, ``replace_meta=None``) the metadata of the source; a symlink
        source is followed. The copy keeps the source's ETag and CRC-64 (same bytes)."""
        src, src_key = self.follow(src_bucket, src_key)
        self.bucket(bucket)
        check_key(key)
        dst_path = self.object_path(bucket, key)
        tmp = dst_path.with_name(dst_path.name + f".{secrets.token_hex(4)}.tmp")
        shutil.copyfile(self.object_path(src_bucket, src_key), tmp)
        os.replace(tmp, dst_path)
        meta = ObjectMeta(**{**asdict(src), "key": key, "last_modified": time.time()})
        if meta.object_type == "Appendable":  # a copy is a Normal object
            meta.object_type = "Normal"
        if replace_meta is not None:
            meta.user_meta = replace_meta
            meta.content_type = content_type or meta.content_type
        _atomic_json(dst_path.with_suffix(".json"), asdict(meta))
        self.objects[bucket][key] = meta
        return meta

    def list(
        self, bucket: str, *, prefix: str, start_after: str, delimiter: str, max_keys: int
    ) -> tuple[list[ObjectMeta], list[str], bool, str]:
        """Objects and common prefixes after ``start_after``; returns (objects, prefixes, truncated, next)."""
        self.bucket(bucket)
        objects: list[ObjectMeta] = []
        prefixes: list[str] = []
        last = ""
        truncated = False
        for key in sorted(self.objects[bucket]):
            if not key.startswith(prefix) or key <= start_after:
                continue
            entry: str | None = None
            if delimiter:
                idx = key.find(delimiter, len(prefix))
                if idx >= 0:
                    entry = key[: idx + len(delimiter)]
                    if entry == last or entry <= start_after:
                        continue
            if len(objects) + len(prefixes) >= max_keys:
                truncated = True
                break
            if entry is not None:
                prefixes.append(entry)
                last = entry
            else:
                objects.append(self.objects[bucket][key])
                last = key
        # A next marker that is a common prefix must skip all keys below it.
        next_marker = last if truncated else ""
        return objects, prefixes, truncated, next_marker

    # ------------------------------------------------------------------ multipart
    def _udir(self, upload_id: str) -> Path:
        return self.root / "uploads" / upload_id

    def upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        self.bucket(bucket)
        up = self.uploads.get(upload_id)
        if up is None or up.bucket != bucket or up.key != key:
            raise no_such_upload(upload_id)
        return up

    def initiate(self, bucket: str, key: str, content_type: str | None, user_meta: dict[str, str]) -> Upload:
        self.bucket(bucket)
        check_key(key)
        up = Upload(
            upload_id=new_upload_id(),
            bucket=bucket,
            key=key,
            initiated=time.time(),
            content_type=content_type or "application/octet-stream",
            user_meta=user_meta,
        )
        self._udir(up.upload_id).mkdir(parents=True)
        _atomic_json(self._udir(up.upload_id) / "upload.json", asdict(up))
        self.uploads[up.upload_id] = up
        self.parts[up.upload_id] = {}
        return up

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, chunks: AsyncIterator[bytes], content_md5: str | None
    ) -> PartMeta:
        self.upload(bucket, key, upload_id)
        if not 1 <= number <= MAX_PARTS:
            raise invalid_argument(
                "partNumber", str(number), f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive."
            )
        udir = self._udir(upload_id)
        tmp = udir / f"part-{number}.{secrets.token_hex(4)}.tmp"
        try:
            md5, crc, size = await _receive(chunks, tmp)
            if content_md5 is not None and content_md5 != base64.b64encode(md5.digest()).decode():
                raise OssError(400, "InvalidDigest", "The Content-MD5 you specified is not valid.", "0016-00000402")
            if upload_id not in self.uploads:  # aborted while we were receiving
                raise no_such_upload(upload_id)
            os.replace(tmp, udir / f"part-{number}.data")
        finally:
            tmp.unlink(missing_ok=True)
        part = PartMeta(
            number=number, size=size, etag=f'"{md5.hexdigest().upper()}"', crc64=crc.value, last_modified=time.time()
        )
        _atomic_json(udir / f"part-{number}.json", asdict(part))
        self.parts[upload_id][number] = part
        return part

    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        src_bucket: str,
        src_key: str,
        byte_range: tuple[int, int] | None,
    ) -> PartMeta:
        """UploadPartCopy: the part is bytes ``byte_range`` (inclusive; None = all) of the source object."""
        self.upload(bucket, key, upload_id)
        src, src_key = self.follow(src_bucket, src_key)
        start, end = byte_range if byte_range is not None else (0, src.size - 1)
        chunks = file_chunks(self.object_path(src_bucket, src_key), start, end) if src.size else _no_chunks()
        return await self.upload_part(bucket, key, upload_id, number, chunks, None)

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartMeta]:
        self.upload(bucket, key, upload_id)
        return [self.parts[upload_id][n] for n in sorted(self.parts[upload_id])]

    def complete(self, bucket: str, key: str, upload_id: str, requested: list[tuple[int, str]] | None) -> ObjectMeta:
        """``requested`` = [(part_number, etag)] from the XML body, or None for ``x-oss-complete-all``."""
        up = self.upload(bucket, key, upload_id)
        have = self.parts[upload_id]
        if requested is None:
            requested = [(n, have[n].etag) for n in sorted(have)]
        if not requested:
            raise OssError(
                400,
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema: no Part.",
                "0042-00000204",
            )
        numbers = [n for n, _ in requested]
        if numbers != sorted(set(numbers)):
            raise OssError(
                400,
                "InvalidPartOrder",
                "The list of parts was not in ascending order. The parts "
                "list must be specified in order by part number.",
                "0042-00000209",
            )
        chosen: list[PartMeta] = []
        for n, etag in requested:
            part = have.get(n)
            if part is None or part.etag.strip('"').upper() != etag.strip().strip('"').upper():
                raise OssError(
                    400,
                    "InvalidPart",
                    "One or more of the specified parts could not be found or "
                    "the specified entity tag might not have matched the part's entity tag.",
                    "0042-00000206",
                    PartNumber=str(n),
                    ETag=etag,
                )
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise OssError(
                    400,
                    "EntityTooSmall",
                    f"Your proposed upload is smaller than the minimum allowed "
                    f"size: part {part.number} is {part.size} bytes, every part but the last must be "
                    f">= {MIN_PART_SIZE}.",
                    "0042-00000211",
                    PartNumber=str(part.number),
                )
        dst = self.object_path(bucket, key)
        tmp = dst.with_name(dst.name + f".{secrets.token_hex(4)}.tmp")
        crc, md5s, size = Crc64(), b"", 0
        with open(tmp, "wb") as out:
            for part in chosen:
                with open(self._udir(upload_id) / f"part-{part.number}.data", "rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                        crc.update(chunk)
                        size += len(chunk)
                md5s += bytes.fromhex(part.etag.strip('"'))
        os.replace(tmp, dst)
        meta = ObjectMeta(
            key=key,
            size=size,
            etag=f'"{hashlib.md5(md5s).hexdigest().upper()}-{len(chosen)}"',
            crc64=crc.value,
            last_modified=time.time(),
            content_type=up.content_type,
            object_type="Multipart",
            user_meta=up.user_meta,
        )
        _atomic_json(dst.with_suffix(".json"), asdict(meta))
        self.objects[bucket][key] = meta
        self._drop_upload(upload_id)
        return meta

    def abort(self, bucket: str, key: str, upload_id: str) -> None:
        self.upload(bucket, key, upload_id)
        self._drop_upload(upload_id)

    def _drop_upload(self, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)
        self.parts.pop(upload_id, None)
        shutil.rmtree(self._udir(upload_id), ignore_errors=True)

    def list_uploads_page(
        self, bucket: str, *, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> tuple[list[Upload], list[str], bool]:
        """ListMultipartUploads: uploads in (key, upload id) order after the markers, common prefixes folded as in
        ListObjects; returns (uploads, prefixes, truncated). Without key-marker, upload-id-marker is ignored; with
        it, uploads of key-marker itself come only when upload-id-marker is given and they sort after it."""
        entries: list[Upload | str] = []
        for up in self.list_uploads(bucket, prefix):
            if key_marker and (
                up.key < key_marker
                or (up.key == key_marker and (not upload_id_marker or up.upload_id <= upload_id_marker))
            ):
                continue
            if delimiter:
                idx = up.key.find(delimiter, len(prefix))
                if idx >= 0:
                    common = up.key[: idx + len(delimiter)]
                    if common <= key_marker or (entries and entries[-1] == common):
                        continue
                    entries.append(common)
                    continue
            entries.append(up)
            if len(entries) > max_uploads:
                break
        truncated = len(entries) > max_uploads
        page = entries[:max_uploads]
        return [e for e in page if isinstance(e, Upload)], [e for e in page if isinstance(e, str)], truncated

    def list_uploads(self, bucket: str, prefix: str = "") -> list[Upload]:
        self.bucket(bucket)
        return sorted(
            (u for u in self.uploads.values() if u.bucket == bucket and u.key.startswith(prefix)),
            key=lambda u: (u.key, u.upload_id),
        )
