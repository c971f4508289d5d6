"""Upload a trained SavedModel to ``oss://bucket/prefix/<model>/<version>/`` in TF Serving's layout.

Validates the layout before any upload, skips files whose remote CRC64 already matches (a re-run moves
0 bytes), uploads large files as resumable multipart with a checkpoint under a stable directory (an
interrupted upload resumes with the missing parts only), and logs progress.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from elastic_inference.exceptions import ModelLayoutError, SpecError
from elastic_inference.hooks.base import ack_conn_id_from
from elastic_inference.model_layout import (
    ModelLayout,
    extract_archive,
    is_archive,
    is_oss_uri,
    parse_oss_source,
    remote_saved_model_problems,
    resolve_layout,
)
from elastic_inference.specs import ModelSpec, coerce

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_checkpoint_dir() -> Path:
    """Stable across task re-runs on a worker: ``$AIRFLOW_HOME/.elastic_inference/oss``."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home) / ".elastic_inference" / "oss"


class UploadCancelled(Exception):
    """Raised inside oss2's upload (from its progress callback) when the task is killed."""


class _Progress:
    """Thread-safe byte counter that logs every ``step`` percent of the bytes to send; stops the upload (raises
    :class:`UploadCancelled` from oss2's callback) once ``cancelled`` is set."""

    def __init__(self, log: Any, total: int, step: int = 10, cancelled: threading.Event | None = None) -> None:
        self.log, self.total, self.step = log, max(total, 1), step
        self.done = 0
        self._next = step
        self._lock = threading.Lock()
        self.cancelled = cancelled or threading.Event()

    def file_callback(self, base: int) -> Any:
        def cb(consumed: int, _total: int | None) -> None:
            if self.cancelled.is_set():
                raise UploadCancelled("the upload was stopped (task killed); a re-run resumes or cleans up")
            with self._lock:
                now = base + consumed
                if now > self.done:
                    self.done = now
                pct = 100 * self.done // self.total
                if pct >= self._next:
                    self.log.info("upload progress: %d%% (%d / %d bytes)", pct, self.done, self.total)
                    self._next = (pct // self.step + 1) * self.step

        return cb


class ModelUploadOperator(BaseOperator):
    """Upload a model to OSS for TF Serving.

    :param model: the run's :class:`~elastic_inference.specs.ModelSpec` whole (templated, e.g. the ``plan``
        task's ``model``): source, bucket, prefix, name and version. Or the single keywords:
    :param source: a SavedModel directory (``saved_model.pb`` + ``variables/``), a directory of numeric
        version directories, or a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive of either (templated).
    :param bucket: the OSS bucket (templated).
    :param prefix: key prefix inside the bucket (templated), e.g. ``models``.
    :param model_name: the model's directory under ``prefix`` (templated).
    :param version: the version number for a single SavedModel (default 1), or the one version to upload
        from a versioned directory (default: all) (templated).
    :param create_bucket: create the bucket when it does not exist (otherwise a missing bucket is an error).
    :param multipart_threshold: files at least this large go as resumable multipart uploads.
    :param part_size: multipart part size (OSS minimum 100 KiB).
    :param checkpoint_dir: where multipart checkpoints and extracted archives live (stable across re-runs).
    :param stale_upload_seconds: after the upload, in-progress multipart uploads of this model's keys idle for at
        least this long are aborted (an interrupted upload whose retry ran on another worker, without its
        checkpoint); an upload still sending parts is left alone.

    Returns (XCom): ``{"model_uri", "version_uri", "versions", "objects", "bytes_uploaded", "bytes_skipped",
    "files_uploaded", "files_skipped"}``.
    """

    template_fields: Sequence[str] = ("model", "source", "bucket", "prefix", "model_name", "version")
    template_fields_renderers = {"model": "json"}
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        model: dict[str, Any] | str | None = None,
        source: str | None = None,
        bucket: str | None = None,
        model_name: str | None = None,
        prefix: str = "",
        version: int | str | None = None,
        ack_conn_id: str = "alibaba_ack_default",
        create_bucket: bool = False,
        multipart_threshold: int = 10 * 1024 * 1024,
        part_size: int = 10 * 1024 * 1024,
        num_threads: int = 1,
        checkpoint_dir: str | None = None,
        signature_version: str = "v4",
        stale_upload_seconds: float = 300,
        copy_multipart_threshold: int = 256 * 1024 * 1024,
        **kwargs: Any,
    ) -> None:
        ack_conn_id = ack_conn_id_from(ack_conn_id, kwargs, type(self).__name__)
        super().__init__(**kwargs)
        if model is None and not (source and bucket and model_name):
            raise ValueError(
                f"{type(self).__name__}: pass model= (a ModelSpec mapping) or source, bucket and model_name"
            )
        self.model = model
        self.source: str = source or ""  # set from model= in execute
        self.bucket: str = bucket or ""
        self.prefix = prefix
        self.model_name: str = model_name or ""
        self.version = version
        self.ack_conn_id = ack_conn_id
        self.create_bucket = create_bucket
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.num_threads = num_threads
        self.checkpoint_dir = checkpoint_dir
        self.signature_version = signature_version
        self.stale_upload_seconds = stale_upload_seconds
        self.copy_multipart_threshold = copy_multipart_threshold
        self._killed = threading.Event()

    def on_kill(self) -> None:
        """Stop the upload at its next progress callback (oss2 calls it after every part or chunk). What was sent
        stays: the checkpoint resumes it on this worker; elsewhere the re-run aborts the orphaned parts."""
        self._killed.set()

    # -- validation (before any network call) ---------------------------------------------------------------
    def apply_spec(self) -> None:
        """Take the (rendered) model spec's values."""
        if self.model is None:
            return
        spec = ModelSpec.from_mapping(self.model)
        self.source, self.bucket, self.prefix = spec.source, spec.bucket, spec.prefix
        self.model_name, self.version = spec.name, spec.version

    def _version(self) -> int | None:
        try:
            version = coerce(self.version, "integer", "version", optional=True)
        except SpecError:
            version = -1
        if version is None or version >= 0:
            return version
        raise ModelLayoutError(f"version={self.version!r}: TF Serving versions are non-negative integers")

    def _validate_names(self) -> str:
        if not isinstance(self.bucket, str) or not _BUCKET.match(self.bucket):
            raise ModelLayoutError(
                f"bucket={self.bucket!r}: OSS bucket names are 3-63 lowercase letters, digits "
                "and '-', starting and ending with a letter or digit"
            )
        if not isinstance(self.model_name, str) or not _MODEL_NAME.match(self.model_name):
            raise ModelLayoutError(f"model_name={self.model_name!r}: use letters, digits, '.', '_' or '-'")
        prefix = (self.prefix or "").strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ModelLayoutError(f"prefix={self.prefix!r}: no empty, '.' or '..' path segments")
        return f"{prefix}/{self.model_name}/" if prefix else f"{self.model_name}/"

    def layout(self, work_dir: Path) -> ModelLayout:
        source = Path(os.path.expanduser(str(self.source)))
        if is_archive(source):
            self.log.info("extracting archive %s", source)
            root = work_dir / "extracted"
            source = extract_archive(source, root)
            self._extracted = root / source.relative_to(root).parts[0]
        return resolve_layout(source, self._version())

    def _remove_extracted(self) -> None:
        """The extracted archive, once uploaded (kept after a failure: a resumed upload needs the same files)."""
        extracted = getattr(self, "_extracted", None)
        if extracted is not None and extracted.exists():
            shutil.rmtree(extracted, ignore_errors=True)
            self.log.info("removed the extracted archive %s", extracted)

    # -- a model already in OSS ------------------------------------------------------------------------------
    def _copy_in_oss(self, hook: Any, base: str) -> dict[str, Any]:
        """``source`` is ``oss://.../<version>/``: served in place when it already is the serving folder
        ``oss://<bucket>/<prefix>/<model>/<version>/``, else copied there inside OSS (CopyObject / UploadPartCopy,
        CRC64-checked, see ``OssHook.copy_object``); objects already there with the same size and CRC64 are
        skipped, so a re-run copies nothing. Nothing is read or sent by the worker: ``bytes_uploaded`` is 0."""
        src = parse_oss_source(str(self.source))
        version = self._version() or src.version
        dest_prefix = f"{base}{version}/"
        objects = list(hook.list_objects(src.bucket, src.key_prefix, max_objects=100_000))
        rel = {o.key[len(src.key_prefix) :]: o for o in objects if not o.key.endswith("/")}
        problems = remote_saved_model_problems(src, set(rel))
        if problems:
            raise ModelLayoutError("not a complete SavedModel in OSS:\n  - " + "\n  - ".join(problems))
        model_uri = f"oss://{self.bucket}/{base}"
        in_place = (src.bucket, src.key_prefix) == (self.bucket, dest_prefix)
        copied: list[str] = []
        skipped: list[str] = []
        bytes_copied = bytes_skipped = 0
        if in_place:
            self.log.info("model %s is already the serving folder %s: served in place", src.uri, dest_prefix)
            skipped, bytes_skipped = [dest_prefix + k for k in rel], sum(o.size for o in rel.values())
        else:
            if not hook.bucket_exists(self.bucket):
                if not self.create_bucket:
                    raise ModelLayoutError(
                        f"bucket {self.bucket!r} does not exist at {hook.endpoint}: create it, or pass create_bucket=True"
                    )
                hook.create_bucket(self.bucket)
            for name in sorted(rel):
                key = dest_prefix + name
                there, source = hook.head_object(self.bucket, key), hook.head_object(src.bucket, src.key_prefix + name)
                if (
                    there is not None
                    and source is not None
                    and (there.size, there.crc64) == (source.size, source.crc64)
                ):
                    skipped.append(key)
                    bytes_skipped += there.size
                    continue
                done = hook.copy_object(
                    src.bucket,
                    src.key_prefix + name,
                    self.bucket,
                    key,
                    multipart_threshold=self.copy_multipart_threshold,
                    part_size=max(self.part_size, 100 * 1024),
                )
                copied.append(key)
                bytes_copied += done.size
                self.log.info(
                    "copied %s%s to oss://%s/%s inside OSS (%d bytes%s, CRC64 checked)",
                    src.uri,
                    name,
                    self.bucket,
                    key,
                    done.size,
                    ", UploadPartCopy" if done.multipart else "",
                )
            hook.abort_stale_uploads(
                self.bucket, dest_prefix, {dest_prefix + k for k in rel}, idle_seconds=self.stale_upload_seconds
            )
        self.log.info(
            "model at %s%d/: %d bytes copied inside OSS, %d bytes already there, 0 bytes through the worker",
            model_uri,
            version,
            bytes_copied,
            bytes_skipped,
        )
        return {
            "model_uri": model_uri,
            "version_uri": f"{model_uri}{version}/",
            "versions": [version],
            "objects": [f"oss://{self.bucket}/{dest_prefix}{k}" for k in sorted(rel)],
            "source_uri": src.uri,
            "served_in_place": in_place,
            "bytes_uploaded": 0,
            "bytes_copied": bytes_copied,
            "bytes_skipped": bytes_skipped,
            "files_uploaded": 0,
            "files_copied": len(copied),
            "files_skipped": len(skipped),
            "aborted_uploads": 0,
        }

    # -- run ------------------------------------------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        from elastic_inference.hooks.oss import OssHook, local_crc64

        self.apply_spec()
        base = self._validate_names()
        if is_oss_uri(str(self.source)):
            return self._copy_in_oss(OssHook(self.ack_conn_id, signature_version=self.signature_version), base)
        work_dir = Path(self.checkpoint_dir) if self.checkpoint_dir else default_checkpoint_dir()
        layout = self.layout(work_dir)
        self.log.info(
            "model %s: versions %s, %d files, %d bytes",
            self.model_name,
            list(layout.versions),
            len(layout.files),
            layout.total_bytes,
        )

        hook = OssHook(self.ack_conn_id, signature_version=self.signature_version)
        if not hook.bucket_exists(self.bucket):
            if not self.create_bucket:
                raise ModelLayoutError(
                    f"bucket {self.bucket!r} does not exist at {hook.endpoint}: create it, or pass create_bucket=True"
                )
            self.log.info("creating bucket %s", self.bucket)
            hook.create_bucket(self.bucket)

        to_send = []
        skipped: list[str] = []
        bytes_skipped = 0
        for f in layout.files:
            key = base + f.relative_key
            remote = hook.head_object(self.bucket, key)
            if (
                remote is not None
                and remote.size == f.size
                and remote.crc64 is not None
                and remote.crc64 == local_crc64(f.local_path)
            ):
                skipped.append(key)
                bytes_skipped += f.size
            else:
                to_send.append((f, key))
        self.log.info(
            "%d file(s) already in OSS with the same CRC64 (%d bytes skipped); %d to upload",
            len(skipped),
            bytes_skipped,
            len(to_send),
        )

        progress = _Progress(self.log, sum(f.size for f, _ in to_send), cancelled=self._killed)
        bytes_uploaded = 0
        sent_base = 0
        for f, key in to_send:
            result = hook.upload_file(
                self.bucket,
                key,
                f.local_path,
                checkpoint_dir=work_dir,
                multipart_threshold=self.multipart_threshold,
                part_size=self.part_size,
                num_threads=self.num_threads,
                progress_callback=progress.file_callback(sent_base),
            )
            sent_base += f.size
            bytes_uploaded += result.bytes_sent
            self.log.info(
                "uploaded oss://%s/%s (%d bytes%s%s)",
                self.bucket,
                key,
                f.size,
                ", multipart" if result.multipart else "",
                f", resumed after {result.resumed_bytes} bytes" if result.resumed_bytes else "",
            )

        aborted = hook.abort_stale_uploads(
            self.bucket, base, {base + f.relative_key for f in layout.files}, idle_seconds=self.stale_upload_seconds
        )
        for u in aborted:
            self.log.info(
                "aborted interrupted multipart upload %s of oss://%s/%s (%d part(s), idle since %s)",
                u.upload_id,
                self.bucket,
                u.key,
                u.parts,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(u.last_activity)),
            )
        self._remove_extracted()
        model_uri = f"oss://{self.bucket}/{base}"
        newest = max(layout.versions)
        out = {
            "model_uri": model_uri,
            "version_uri": f"{model_uri}{newest}/",
            "versions": list(layout.versions),
            "objects": [f"oss://{self.bucket}/{base}{f.relative_key}" for f in layout.files],
            "bytes_uploaded": bytes_uploaded,
            "bytes_skipped": bytes_skipped,
            "files_uploaded": len(to_send),
            "files_skipped": len(skipped),
            "aborted_uploads": len(aborted),
        }
        self.log.info("model at %s: %d bytes uploaded, %d bytes skipped", model_uri, bytes_uploaded, bytes_skipped)
        return out
