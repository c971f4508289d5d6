"""OSS errors: XML ``<Error>`` with Code/Message/RequestId/HostId/EC (reference §2.5).

For HEAD responses (no body) OSS sends the same XML base64-encoded in ``x-oss-err`` plus ``x-oss-ec``;
oss2's ``make_exception`` decodes it. Status/code pairs follow the OSS error-code documentation
(NoSuchBucket/NoSuchKey/NoSuchUpload 404; AccessDenied/InvalidAccessKeyId/SignatureDoesNotMatch 403;
BucketAlreadyExists/BucketNotEmpty 409; InvalidPart/InvalidPartOrder/InvalidDigest/InvalidArgument 400).
"""

from __future__ import annotations

import secrets
import time
from xml.sax.saxutils import escape


def new_request_id() -> str:
    """OSS request ids are 24 upper-case hex characters, e.g. ``5C3D9175B6FC201293AD4890``."""
    return f"{int(time.time()):08X}" + secrets.token_hex(8).upper()


class OssError(Exception):
    """An OSS error answer. ``extra`` become XML elements after HostId; ``headers`` are response headers OSS sends
    with this error (e.g. ``x-oss-next-append-position`` with PositionNotEqualToLength)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        ec: str = "0000-00000000",
        *,
        headers: dict[str, str] | None = None,
        **extra: str,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.ec = ec
        self.extra = extra
        self.headers = headers or {}

    def xml(self, request_id: str, host_id: str) -> str:
        extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in self.extra.items())
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{escape(host_id)}</HostId>{extra}"
            f"<EC>{self.ec}</EC></Error>"
        )


def no_such_bucket(bucket: str) -> OssError:
    return OssError(404, "NoSuchBucket", "The specified bucket does not exist.", "0015-00000101", BucketName=bucket)


def no_such_key(key: str) -> OssError:
    return OssError(404, "NoSuchKey", "The specified key does not exist.", "0026-00000001", Key=key)


def no_such_upload(upload_id: str) -> OssError:
    return OssError(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may "
        "have been aborted or completed.",
        "0042-00000002",
        UploadId=upload_id,
    )


def invalid_argument(name: str, value: str, message: str) -> OssError:
    return OssError(400, "InvalidArgument", message, "0017-00000801", ArgumentName=name, ArgumentValue=value)


def precondition_failed(condition: str) -> OssError:
    """412 for If-Match / If-Unmodified-Since (GetObject, HeadObject) and the x-oss-copy-source-if-* headers
    (CopyObject, UploadPartCopy); OSS error 0017-00001001 ("A condition in the request is not met")."""
    return OssError(
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        "0017-00001001",
        Condition=condition,
    )


def malformed_xml() -> OssError:
    return OssError(
        400,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema.",
        "0016-00000608",
    )
