"""ACS3-HMAC-SHA256 (OpenAPI V3 signature) verification, mirroring ``alibabacloud_tea_openapi.utils``.

CanonicalRequest = METHOD\\n PATH(as sent)\\n sorted(k=quote(v, safe='~'))&...\\n
                   "k:v\\n" for each signed header (sorted, lower-case, values stripped)\\n
                   signed-header-list\\n hex(sha256(body))
StringToSign = "ACS3-HMAC-SHA256\\n" + hex(sha256(CanonicalRequest)); Signature = hex(HMAC-SHA256(secret, ·)).

Errors use the POP gateway's codes: ``IncompleteSignature`` (malformed/missing Authorization),
``InvalidAccessKeyId.NotFound`` (404, "Specified access key is not found." — seen verbatim with
"HTTP Status: 404" in XWJR-Ops/zabbix-RDS-monitor#9), ``SignatureDoesNotMatch`` (400, "Specified
signature is not matched with our calculation." — NewFuture/DDNS#57), ``InvalidTimeStamp.Expired`` and
``SignatureNonceUsed`` (400), ``InvalidSecurityToken.*`` for STS.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from ack_sandbox.alibaba_credentials import CredentialError, CredentialStore, Reason
from ack_sandbox.cs.errors import CsError

ALGORITHM = "ACS3-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60


class NonceCache:
    """Nonces seen within the allowed clock skew (replays are refused)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def use(self, nonce: str) -> bool:
        now = time.time()
        if len(self._seen) > 10000:
            self._seen = {n: t for n, t in self._seen.items() if now - t < MAX_SKEW_SECONDS}
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True


def parse_authorization(value: str) -> tuple[str, str, list[str], str]:
    """``ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`` -> parts."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    if algorithm != ALGORITHM or not {"Credential", "SignedHeaders", "Signature"} <= set(fields):
        raise CsError(
            400,
            "IncompleteSignature",
            f"The request signature does not conform to Alibaba Cloud standards: expected "
            f"'{ALGORITHM} Credential=...,SignedHeaders=...,Signature=...'.",
        )
    return algorithm, fields["Credential"], [h for h in fields["SignedHeaders"].split(";") if h], fields["Signature"]


def canonical_request(
    method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], signed_headers: list[str], body: bytes
) -> str:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    query = "&".join(f"{k}={quote(v, safe='~')}" for k, v in sorted(pairs))
    lower = {k.lower(): v for k, v in headers.items()}
    canon_headers = "".join(f"{h}:{lower.get(h, '').strip()}\n" for h in sorted(signed_headers))
    return "\n".join(
        [
            method,
            raw_path or "/",
            query,
            canon_headers,
            ";".join(sorted(signed_headers)),
            hashlib.sha256(body).hexdigest(),
        ]
    )


def _credential_error(exc: CredentialError) -> CsError:
    if exc.reason is Reason.UNKNOWN_ACCESS_KEY:
        return CsError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    code = {
        Reason.TOKEN_MISSING: "MissingSecurityToken",
        Reason.TOKEN_INVALID: "InvalidSecurityToken.Malformed",
        Reason.TOKEN_EXPIRED: "InvalidSecurityToken.Expired",
    }[exc.reason]
    return CsError(400, code, exc.message)


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    store: CredentialStore,
    nonces: NonceCache,
) -> str:
    """Check the request's signature; returns the caller's AccessKey id or raises ``CsError``."""
    auth = headers.get("Authorization")
    if not auth:
        raise CsError(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Alibaba Cloud standards: no Authorization header.",
        )
    _, access_key_id, signed, signature = parse_authorization(auth)
    lower = {k.lower() for k in headers}
    if "host" not in signed or "x-acs-date" not in signed or not set(signed) <= lower:
        raise CsError(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Alibaba Cloud standards: SignedHeaders must "
            "include host and x-acs-date and only headers present in the request.",
        )
    try:
        stamp = datetime.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise CsError(
            400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted (x-acs-date)."
        ) from None
    if abs(time.time() - stamp.timestamp()) > MAX_SKEW_SECONDS:
        raise CsError(
            400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired: check the client's clock."
        )
    try:
        secret = store.secret_for(access_key_id, headers.get("x-acs-security-token"))
    except CredentialError as exc:
        raise _credential_error(exc) from None
    creq = canonical_request(method, raw_path, raw_query, headers, signed, body)
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    expected = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise CsError(
            400,
            "SignatureDoesNotMatch",
            f"Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}",
        )
    nonce = headers.get("x-acs-signature-nonce")
    if nonce and not nonces.use(nonce):
        raise CsError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
    return access_key_id
