"""Fault injection for the OSS stand-in (``POST /_sandbox/faults``, ``DELETE`` clears)::

    {"server_error": {"count": 1, "action": "UploadPart", "status": 503, "bucket": "models"}}

``action`` is an OSS API name (PutObject, GetObject, UploadPart, CompleteMultipartUpload, ...); omitted
means any. ``bucket`` limits the faults to requests on that bucket (omitted: any), so a test's faults are not
spent by another client of the same sandbox (an OSS watcher polling its own bucket). 5xx errors use OSS's XML format: ``InternalError``/500 or ``ServiceUnavailable``/503.
"""

from __future__ import annotations

from typing import Any

from ack_sandbox.oss.errors import OssError


class OssFaults:
    def __init__(self) -> None:
        self._count = 0
        self._action: str | None = None
        self._status = 500
        self._bucket: str | None = None

    def configure(self, doc: dict[str, Any]) -> None:
        if not isinstance(doc, dict) or set(doc) - {"server_error"}:
            raise ValueError("the OSS faults document supports only {'server_error': {...}}")
        spec = doc.get("server_error") or {}
        status = int(spec.get("status", 500))
        if status not in (500, 502, 503, 504):
            raise ValueError("server_error.status must be 500, 502, 503 or 504")
        self._count, self._action, self._status = int(spec.get("count", 1)), spec.get("action"), status
        self._bucket = spec.get("bucket")

    def clear(self) -> None:
        self._count, self._action, self._bucket = 0, None, None

    def describe(self) -> dict[str, Any]:
        return {
            "server_error": {
                "count": self._count,
                "action": self._action,
                "status": self._status,
                "bucket": self._bucket,
            }
            if self._count
            else None
        }

    def check(self, action: str, bucket: str | None = None) -> None:
        if self._count <= 0 or (self._action is not None and self._action != action):
            return
        if self._bucket is not None and self._bucket != bucket:
            return
        self._count -= 1
        if self._status == 503:
            raise OssError(503, "ServiceUnavailable", "Please reduce your request rate.", "0001-00000503")
        raise OssError(
            self._status, "InternalError", "We encountered an internal error. Please try again.", "0001-00000001"
        )
