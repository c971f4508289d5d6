"""OSS request signatures, verified server-side exactly as oss2 / alibabacloud-oss-v2 compute them.

V1 (``Authorization: OSS <ak>:<sig>``, oss2 ``ProviderAuth``)::

    StringToSign = VERB\\n Content-MD5\\n Content-Type\\n Date\\n sorted("x-oss-*:v\\n") + "/bucket/key" [+ "?" sorted
                   signed sub-resources]       sig = base64(HMAC-SHA1(secret, StringToSign))

V4 (``OSS4-HMAC-SHA256 Credential=ak/date/region/oss/aliyun_v4_request, [AdditionalHeaders=..,] Signature=..``,
oss2 ``ProviderAuthV4`` and oss-v2 ``signer/v4.py``): canonical request = VERB, uri-encoded "/bucket/key"
(keeping "/"), sorted encoded query, x-oss-* + content-type + content-md5 (+ additional) headers, additional
header list, ``x-oss-content-sha256`` (UNSIGNED-PAYLOAD); signing key = HMAC chain "aliyun_v4"+secret → date →
region → "oss" → "aliyun_v4_request".

Presigned URLs (the signature in the query string; OSS API reference "Add signatures to URLs" (V1) and
"(Recommended) V4 signatures in presigned URLs"; oss2 ``ProviderAuth._sign_url`` / ``ProviderAuthV4._sign_url``,
oss-v2 ``signer/v1.py`` / ``signer/v4.py`` ``_auth_query``):

- V1: ``?OSSAccessKeyId=..&Expires=<unix time>&Signature=..`` (+ ``security-token``); StringToSign as above with
  ``Expires`` in place of Date; expired when the server's time is past ``Expires``.
- V4: ``?x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential=ak/date/region/oss/aliyun_v4_request
  &x-oss-date=..&x-oss-expires=<seconds>[&x-oss-additional-headers=..][&x-oss-security-token=..]&x-oss-signature=..``;
  the canonical query is every parameter but ``x-oss-signature``; expired past ``x-oss-date + x-oss-expires``.

An expired URL is 403 AccessDenied "Request has expired." with ``Expires`` and ``ServerTime`` (OSS error page
0002-00000069). ``verify`` answers *who* signed (the AccessKey id); what that key may do (e.g. read-only RAM
keys) is a separate check the wire can make with the key id and the API name, after ``verify``.
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
from ack_sandbox.oss.errors import OssError, invalid_argument

MAX_SKEW_SECONDS = 15 * 60
MAX_V4_EXPIRES = 7 * 24 * 3600  # V4 presigned URLs are valid for at most 7 days

# The query parameters a presigned URL carries for its signature: not sub-resources of the request itself.
QUERY_AUTH_PARAMS = frozenset(
    [
        "OSSAccessKeyId",
        "Expires",
        "Signature",
        "security-token",
        "x-oss-signature-version",
        "x-oss-credential",
        "x-oss-date",
        "x-oss-expires",
        "x-oss-signature",
        "x-oss-additional-headers",
        "x-oss-security-token",
    ]
)

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
        return store.secret_for(access_key_id, token, service="oss")
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


def _expired(expires_at: float, expires_text: str) -> OssError:
    return OssError(
        403,
        "AccessDenied",
        "Request has expired.",
        "0002-00000069",
        Expires=expires_text,
        ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _v1_string_to_sign(
    method: str, bucket: str, key: str, pairs: list[tuple[str, str]], lower: Mapping[str, str], date: str
) -> str:
    oss_headers = "".join(f"{k}:{v}\n" for k, v in sorted((k, v) for k, v in lower.items() if k.startswith("x-oss-")))
    resource = f"/{bucket}/{key}" if bucket else "/"
    sub = sorted((k, v) for k, v in pairs if k in V1_SUBRESOURCES)
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
    return "\n".join(
        [method, lower.get("content-md5", ""), lower.get("content-type", ""), date, oss_headers + resource]
    )


def _v1_check(secret: str, string_to_sign: str, signature: str, access_key_id: str) -> None:
    expected = base64.b64encode(hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        raise OssError(
            403,
            "SignatureDoesNotMatch",
            _SIG_MISMATCH,
            "0002-00000040",
            OSSAccessKeyId=access_key_id,
            StringToSign=string_to_sign,
            SignatureProvided=signature,
        )


def verify_v1_query(
    method: str, bucket: str, key: str, raw_query: str, headers: Mapping[str, str], store: CredentialStore
) -> str:
    pairs = _query_pairs(raw_query)
    params = dict(pairs)
    access_key_id, expires, signature = params.get("OSSAccessKeyId", ""), params.get("Expires", ""), params["Signature"]
    if not expires.isdigit():
        raise OssError(403, "AccessDenied", "Invalid argument: Expires.", "0002-00000068", Expires=expires)
    if time.time() > int(expires):
        raise _expired(int(expires), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expires))))
    secret = _secret(store, access_key_id, params.get("security-token"))
    lower = {k.lower(): v for k, v in headers.items()}
    _v1_check(secret, _v1_string_to_sign(method, bucket, key, pairs, lower, expires), signature, access_key_id)
    return access_key_id


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
    _v1_check(secret, _v1_string_to_sign(method, bucket, key, _query_pairs(raw_query), lower, date), signature, creds)
    return creds


def _v4_fields(auth: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in auth[len("OSS4-HMAC-SHA256") :].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    return fields


def _scope(credential: str) -> tuple[str, str, str]:
    """``ak/yyyymmdd/region/oss/aliyun_v4_request`` -> (ak, day, region); 400 when malformed."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[3] != "oss" or parts[4] != "aliyun_v4_request":
        raise OssError(
            400,
            "InvalidArgument",
            "Authorization is invalid: expected Credential=<ak>/<yyyymmdd>/<region>/oss/aliyun_v4_request.",
            "0002-00000011",
        )
    return parts[0], parts[1], parts[2]


def _check_region(region: str, expected: str | None, in_query: bool) -> None:
    """The credential scope's region must be the service's (OSS error 0002-00000226)."""
    if expected is not None and region != expected:
        message = (
            "The signing region in credential is invalid."
            if in_query
            else "Invalid signing region in Authorization header."
        )
        raise OssError(400, "InvalidArgument", message, "0002-00000226", SigningRegion=region)


def _v4_check(
    *,
    secret: str,
    method: str,
    bucket: str,
    key: str,
    query: list[tuple[str, str]],
    lower: Mapping[str, str],
    additional: list[str],
    date_time: str,
    day: str,
    region: str,
    signature: str,
    access_key_id: str,
) -> None:
    canon_headers = "".join(
        f"{k}:{v}\n"
        for k, v in sorted(
            (k, v)
            for k, v in lower.items()
            if k.startswith("x-oss-") or k in ("content-type", "content-md5") or k in additional
        )
    )
    uri = _v4_encode(f"/{bucket}/{key}" if bucket else "/", keep_slash=True)
    canon_query = "&".join(
        f"{k}={v}" if v else k for k, v in sorted((_v4_encode(k, False), _v4_encode(v, False)) for k, v in query)
    )
    payload = lower.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
    creq = "\n".join([method, uri, canon_query, canon_headers, ";".join(sorted(additional)), payload])
    scope = f"{day}/{region}/oss/aliyun_v4_request"
    string_to_sign = f"OSS4-HMAC-SHA256\n{date_time}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    key_ = hmac.new(("aliyun_v4" + secret).encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, "oss", "aliyun_v4_request"):
        key_ = hmac.new(key_, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key_, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise OssError(
            403,
            "SignatureDoesNotMatch",
            _SIG_MISMATCH,
            "0002-00000040",
            OSSAccessKeyId=access_key_id,
            StringToSign=string_to_sign,
            SignatureProvided=signature,
            CanonicalRequest=creq,
        )


def _v4_time(date_time: str) -> datetime | None:
    try:
        return datetime.strptime(date_time, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def verify_v4(
    method: str,
    bucket: str,
    key: str,
    raw_query: str,
    headers: Mapping[str, str],
    auth: str,
    store: CredentialStore,
    region: str | None = None,
) -> str:
    fields = _v4_fields(auth)
    if "Signature" not in fields:
        raise OssError(400, "InvalidArgument", "Authorization header is invalid: no Signature.", "0002-00000011")
    access_key_id, day, scope_region = _scope(fields.get("Credential", ""))
    _check_region(scope_region, region, in_query=False)
    region = scope_region
    lower = {k.lower(): v for k, v in headers.items()}
    date_time = lower.get("x-oss-date", "")
    _check_time(_v4_time(date_time), "x-oss-date")
    if not date_time.startswith(day):
        raise OssError(
            403, "AccessDenied", "The date in the Credential scope does not match x-oss-date.", "0002-00000001"
        )
    _v4_check(
        secret=_secret(store, access_key_id, lower.get("x-oss-security-token")),
        method=method,
        bucket=bucket,
        key=key,
        query=_query_pairs(raw_query),
        lower=lower,
        additional=[h for h in fields.get("AdditionalHeaders", "").split(";") if h],
        date_time=date_time,
        day=day,
        region=region,
        signature=fields["Signature"],
        access_key_id=access_key_id,
    )
    return access_key_id


def verify_v4_query(
    method: str,
    bucket: str,
    key: str,
    raw_query: str,
    headers: Mapping[str, str],
    store: CredentialStore,
    region: str | None = None,
) -> str:
    pairs = _query_pairs(raw_query)
    params = dict(pairs)
    if params.get("x-oss-signature-version") != "OSS4-HMAC-SHA256":
        raise invalid_argument(
            "x-oss-signature-version",
            params.get("x-oss-signature-version", ""),
            "Unsupported signature version: OSS4-HMAC-SHA256 expected.",
        )
    access_key_id, day, scope_region = _scope(params.get("x-oss-credential", ""))
    _check_region(scope_region, region, in_query=True)
    region = scope_region
    date_time, expires = params.get("x-oss-date", ""), params.get("x-oss-expires", "")
    stamp = _v4_time(date_time)
    if stamp is None or not date_time.startswith(day):
        raise OssError(
            403, "AccessDenied", "Invalid argument: x-oss-date.", "0002-00000221", **{"x-oss-date": date_time}
        )
    if not expires.isdigit() or not 0 < int(expires) <= MAX_V4_EXPIRES:
        raise invalid_argument("x-oss-expires", expires, f"x-oss-expires must be between 1 and {MAX_V4_EXPIRES}.")
    expires_at = stamp.timestamp() + int(expires)
    if time.time() > expires_at:
        raise _expired(expires_at, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)))
    _v4_check(
        secret=_secret(store, access_key_id, params.get("x-oss-security-token")),
        method=method,
        bucket=bucket,
        key=key,
        query=[(k, v) for k, v in pairs if k != "x-oss-signature"],
        lower={k.lower(): v for k, v in headers.items()},
        additional=[h for h in params.get("x-oss-additional-headers", "").split(";") if h],
        date_time=date_time,
        day=day,
        region=region,
        signature=params.get("x-oss-signature", ""),
        access_key_id=access_key_id,
    )
    return access_key_id


def verify(
    method: str,
    bucket: str,
    key: str,
    raw_query: str,
    headers: Mapping[str, str],
    store: CredentialStore,
    region: str | None = None,
) -> str:
    """The caller's AccessKey id, or ``OssError``: an Authorization header (V1/V4) or a presigned URL (V1/V4
    query). Anonymous requests are refused (buckets are private). ``region``: the service's region, which a V4
    credential scope must name."""
    auth = headers.get("Authorization", "")
    if auth.startswith("OSS4-HMAC-SHA256"):
        return verify_v4(method, bucket, key, raw_query, headers, auth, store, region)
    if auth.startswith("OSS "):
        return verify_v1(method, bucket, key, raw_query, headers, auth, store)
    if auth:
        raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000011")
    params = {k for k, _ in _query_pairs(raw_query)}
    if "x-oss-signature" in params:
        return verify_v4_query(method, bucket, key, raw_query, headers, store, region)
    if "Signature" in params and "OSSAccessKeyId" in params:
        return verify_v1_query(method, bucket, key, raw_query, headers, store)
    raise OssError(
        403, "AccessDenied", "You have no right to access this object because of bucket acl.", "0003-00000001"
    )


# ---- what the caller may do: RAM users' policies (read-only keys) --------------------------------------------------


def ram_action(api: str, query: Mapping[str, str]) -> str:
    """The RAM action an OSS API call needs (OSS "RAM policy" action list): multipart writes are oss:PutObject,
    HEAD is oss:GetObject, a bucket GET lists objects unless it asks for a sub-resource."""
    if api == "GetBucket":
        for sub, action in (
            ("bucketInfo", "GetBucketInfo"),
            ("location", "GetBucketLocation"),
            ("uploads", "ListMultipartUploads"),
        ):
            if sub in query:
                return f"oss:{action}"
        return "oss:ListObjects"
    return "oss:" + RAM_ACTIONS.get(api, api)


# APIs checked under another API's action (OSS's RAM action list: writes of an object's bytes are oss:PutObject,
# reads oss:GetObject, a batch delete oss:DeleteObject). A copy also needs oss:GetObject on its source, which
# the sandbox does not check.
RAM_ACTIONS = {
    "HeadObject": "GetObject",
    "GetSymlink": "GetObject",
    "PutSymlink": "PutObject",
    "AppendObject": "PutObject",
    "CopyObject": "PutObject",
    "InitiateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "DeleteMultipleObjects": "DeleteObject",
}


def authorize(
    store: CredentialStore, access_key_id: str, api: str, bucket: str, key: str, query: Mapping[str, str]
) -> None:
    """``OssError`` 403 AccessDenied when a RAM user's policy does not allow the call (implicit deny, OSS error
    page 0003-00000202). The account itself and its STS credentials may do everything."""
    ram = store.ram_key(access_key_id)
    if ram is None:
        return
    action = ram_action(api, query)
    if not ram.allows(action, bucket, key):
        raise OssError(
            403,
            "AccessDenied",
            "You are not authorized to do this action. You should be authorized by RAM.",
            "0003-00000202",
            AuthAction=action,
        )
