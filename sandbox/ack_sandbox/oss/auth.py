"""OSS request signatures, verified server-side exactly as oss2 / alibabacloud-oss-v2 compute them.

V1 (``Authorization: OSS <ak>:<sig>``, oss2 ``ProviderAuth``)::

    StringToSign = VERB\\n Content-MD5\\n Content-Type\\n Date\\n sorted("x-oss-*:v\\n") + "/bucket/key" [+ "?" sorted
                   signed sub-resources]       sig = base64(HMAC-SHA1(secret, StringToSign))

V4 (``OSS4-HMAC-SHA256 Credential=ak/date/region/oss/aliyun_v4_request, [AdditionalHeaders=..,] Signature=..``,
oss2 ``ProviderAuthV4`` and oss-v2 ``signer/v4.py``): canonical request = VERB, uri-encoded "/bucket/key"
(keeping "/"), sorted encoded query, x-oss-* + content-type + content-md5 (+ additional) headers, additional
header list, ``x-oss-content-sha256`` (UNSIGNED-PAYLOAD); signing key = HMAC chain "aliyun_v4"+secret → date →
region → "oss" → "aliyun_v4_request".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from ack_sandbox.alibaba_credentials import CredentialError, CredentialStore, Reason
from ack_sandbox.oss.errors import OssError

MAX_SKEW_SECONDS = 15 * 60

# oss2 ProviderAuth._subresource_key_set (the query keys V1 signs).
V1_SUBRESOURCES = frozenset(
    [
        "response-content-type",
        "response-content-language",
        "response-cache-control",
        "logging",
        "response-content-encoding",
        "acl",
        "uploadId",
        "uploads",
        "partNumber",
        "group",
        "link",
        "delete",
        "website",
        "location",
        "objectInfo",
        "objectMeta",
        "response-expires",
        "response-content-disposition",
        "cors",
        "lifecycle",
        "restore",
        "qos",
        "referer",
        "stat",
        "bucketInfo",
        "append",
        "position",
        "security-token",
        "live",
        "comp",
        "status",
        "vod",
        "startTime",
        "endTime",
        "x-oss-process",
        "symlink",
        "callback",
        "callback-var",
        "tagging",
        "encryption",
        "versions",
        "versioning",
        "versionId",
        "policy",
        "requestPayment",
        "x-oss-traffic-limit",
        "qosInfo",
        "asyncFetch",
        "x-oss-request-payer",
        "sequential",
        "inventory",
        "inventoryId",
        "continuation-token",
        "worm",
        "wormId",
        "wormExtend",
        "replication",
        "replicationLocation",
        "replicationProgress",
        "transferAcceleration",
        "cname",
        "metaQuery",
        "x-oss-ac-source-ip",
        "x-oss-ac-subnet-mask",
        "x-oss-ac-vpc-id",
        "x-oss-ac-forward-allow",
        "resourceGroup",
        "style",
        "styleName",
        "x-oss-async-process",
        "regionList",
        "x-oss-write-get-object-response",
        "bucketArchiveDirectRead",
        "httpsConfig",
        "redundancyTransition",
        "x-oss-target-redundancy-type",
        "x-oss-redundancy-transition-taskid",
        "accessPoint",
        "accessPointPolicy",
        "publicAccessBlock",
        "x-oss-access-point-name",
        "requesterQosInfo",
        "qosRequester",
        "resourcePoolInfo",
        "resourcePool",
        "resourcePoolBuckets",
    ]
)

_SIG_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your key and signing method."
)


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        k, _, v = part.partition("=")
        pairs.append((unquote(k), unquote(v)))
    return pairs


def _secret(store: CredentialStore, access_key_id: str, token: str | None) -> str:
    try:
        return store.secret_for(access_key_id, token)
    except CredentialError as exc:
        if exc.reason is Reason.UNKNOWN_ACCESS_KEY:
            raise OssError(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
                "0002-00000902",
                OSSAccessKeyId=access_key_id,
            ) from None
        if exc.reason is Reason.TOKEN_EXPIRED:
            raise OssError(
                403, "SecurityTokenExpired", "The security token you provided has expired.", "0002-00000903"
            ) from None
        raise OssError(
            403, "InvalidSecurityToken", "The security token you provided is invalid.", "0002-00000904"
        ) from None


def _check_time(stamp: datetime | None, header: str) -> None:
    if stamp is None:
        raise OssError(403, "AccessDenied", f"Missing or malformed {header} header.", "0002-00000001")
    if abs(time.time() - stamp.timestamp()) > MAX_SKEW_SECONDS:
        raise OssError(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            "0002-00000504",
            MaxAllowedSkewMilliseconds="900000",
        )


def _v4_encode(text: str, keep_slash: bool) -> str:
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "_-~.") or keep_slash and c == "/":
            out.append(c)
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def verify_v1(
    method: str, bucket: str, key: str, raw_query: str, headers: Mapping[str, str], auth: str, store: CredentialStore
) -> str:
    creds, _, signature = auth[4:].strip().rpartition(":")
    if not creds:
        raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000011")
    lower = {k.lower(): v for k, v in headers.items()}
    date = lower.get("x-oss-date") or lower.get("date", "")
    try:
        stamp = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        stamp = None
    _check_time(stamp, "Date")
    secret = _secret(store, creds, lower.get("x-oss-security-token"))
    oss_headers = "".join(f"{k}:{v}\n" for k, v in sorted((k, v) for k, v in lower.items() if k.startswith("x-oss-")))
    resource = f"/{bucket}/{key}" if bucket else "/"
    sub = sorted((k, v) for k, v in _query_pairs(raw_query) if k in V1_SUBRESOURCES)
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
    string_to_sign = "\n".join(
        [method, lower.get("content-md5", ""), lower.get("content-type", ""), date, oss_headers + resource]
    )
    expected = base64.b64encode(hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        raise OssError(
            403,
            "SignatureDoesNotMatch",
            _SIG_MISMATCH,
            "0002-00000040",
            OSSAccessKeyId=creds,
            StringToSign=string_to_sign,
            SignatureProvided=signature,
        )
    return creds


def _v4_fields(auth: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in auth[len("OSS4-HMAC-SHA256") :].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    return fields


def verify_v4(
    method: str, bucket: str, key: str, raw_query: str, headers: Mapping[str, str], auth: str, store: CredentialStore
) -> str:
    fields = _v4_fields(auth)
    scope_parts = fields.get("Credential", "").split("/")
    if (
        len(scope_parts) != 5
        or scope_parts[3] != "oss"
        or scope_parts[4] != "aliyun_v4_request"
        or "Signature" not in fields
    ):
        raise OssError(
            400,
            "InvalidArgument",
            "Authorization header is invalid: expected Credential="
            "<ak>/<yyyymmdd>/<region>/oss/aliyun_v4_request and Signature.",
            "0002-00000011",
        )
    access_key_id, day, region = scope_parts[0], scope_parts[1], scope_parts[2]
    lower = {k.lower(): v for k, v in headers.items()}
    date_time = lower.get("x-oss-date", "")
    try:
        stamp = datetime.strptime(date_time, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        stamp = None
    _check_time(stamp, "x-oss-date")
    if not date_time.startswith(day):
        raise OssError(
            403, "AccessDenied", "The date in the Credential scope does not match x-oss-date.", "0002-00000001"
        )
    secret = _secret(store, access_key_id, lower.get("x-oss-security-token"))
    additional = [h for h in fields.get("AdditionalHeaders", "").split(";") if h]
    canon_headers = "".join(
        f"{k}:{v}\n"
        for k, v in sorted(
            (k, v)
            for k, v in lower.items()
            if k.startswith("x-oss-") or k in ("content-type", "content-md5") or k in additional
        )
    )
    uri = _v4_encode(f"/{bucket}/{key}" if bucket else "/", keep_slash=True)
    query = "&".join(
        f"{k}={v}" if v else k
        for k, v in sorted((_v4_encode(k, False), _v4_encode(v, False)) for k, v in _query_pairs(raw_query))
    )
    payload = lower.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
    creq = "\n".join([method, uri, query, canon_headers, ";".join(sorted(additional)), payload])
    scope = f"{day}/{region}/oss/aliyun_v4_request"
    string_to_sign = f"OSS4-HMAC-SHA256\n{date_time}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    key_ = hmac.new(("aliyun_v4" + secret).encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, "oss", "aliyun_v4_request"):
        key_ = hmac.new(key_, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key_, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["Signature"].lower()):
        raise OssError(
            403,
            "SignatureDoesNotMatch",
            _SIG_MISMATCH,
            "0002-00000040",
            OSSAccessKeyId=access_key_id,
            StringToSign=string_to_sign,
            SignatureProvided=fields["Signature"],
            CanonicalRequest=creq,
        )
    return access_key_id


def verify(
    method: str, bucket: str, key: str, raw_query: str, headers: Mapping[str, str], store: CredentialStore
) -> str:
    """The caller's AccessKey id, or ``OssError``. Anonymous requests are refused (buckets are private)."""
    auth = headers.get("Authorization", "")
    if auth.startswith("OSS4-HMAC-SHA256"):
        return verify_v4(method, bucket, key, raw_query, headers, auth, store)
    if auth.startswith("OSS "):
        return verify_v1(method, bucket, key, raw_query, headers, auth, store)
    if auth:
        raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000011")
    raise OssError(
        403, "AccessDenied", "You have no right to access this object because of bucket acl.", "0003-00000001"
    )
