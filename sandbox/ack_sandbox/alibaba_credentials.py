"""Who may call the sandbox's Alibaba Cloud stand-ins: the demo AccessKey plus STS credentials it issued.

The CS and OSS stand-ins share one registry (``credential_store(ctx)``), the way every real Alibaba
service trusts the same RAM/STS back end. STS AccessKey ids start with ``STS.`` as real AssumeRole
ones do; each carries a SecurityToken and an expiration (wall-clock, because SDKs compare it with the
local clock). Failures are reported as a neutral ``CredentialError.reason`` that each service maps to
its own wire code (CS: ``InvalidAccessKeyId.NotFound`` ...; OSS: ``InvalidAccessKeyId`` ...).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ack_sandbox.context import SandboxContext

SERVICE_KEY = "credentials"


class Reason(Enum):
    UNKNOWN_ACCESS_KEY = "unknown_access_key"
    TOKEN_MISSING = "token_missing"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"


class CredentialError(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class StsCredential:
    access_key_id: str
    access_key_secret: str
    security_token: str
    expiration: float  # epoch seconds (wall clock)

    def as_assume_role(self) -> dict[str, str]:
        """The ``Credentials`` object of STS AssumeRole."""
        return {
            "AccessKeyId": self.access_key_id,
            "AccessKeySecret": self.access_key_secret,
            "SecurityToken": self.security_token,
            "Expiration": datetime.fromtimestamp(self.expiration, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class CredentialStore:
    """The demo AccessKey pair and the STS credentials issued so far, persisted in the state dir."""

    def __init__(self, demo_id: str, demo_secret: str, path: Path) -> None:
        self._demo = (demo_id, demo_secret)
        self._path = path
        self._lock = threading.Lock()
        self._sts: dict[str, StsCredential] = {}
        if path.exists():
            for item in json.loads(path.read_text()):
                cred = StsCredential(**item)
                self._sts[cred.access_key_id] = cred

    @property
    def demo_access_key_id(self) -> str:
        return self._demo[0]

    def issue_sts(self, duration_seconds: int = 3600) -> StsCredential:
        """Issue STS credentials (AssumeRole allows 900..43200 s)."""
        if not 900 <= duration_seconds <= 43200:
            raise ValueError("duration_seconds must be between 900 and 43200")
        cred = StsCredential(
            access_key_id="STS." + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y"),
            access_key_secret=secrets.token_urlsafe(30),
            security_token="CAIS" + secrets.token_urlsafe(96),
            expiration=time.time() + duration_seconds,
        )
        with self._lock:
            self._sts[cred.access_key_id] = cred
            self._save()
        return cred

    def expire(self, access_key_id: str) -> None:
        """Test hook: make an issued STS credential expire now."""
        with self._lock:
            cred = self._sts[access_key_id]
            self._sts[access_key_id] = StsCredential(**{**asdict(cred), "expiration": time.time() - 1})
            self._save()

    def secret_for(self, access_key_id: str, security_token: str | None) -> str:
        """The secret to verify a signature with, or ``CredentialError`` naming why the caller is refused."""
        if access_key_id == self._demo[0]:
            return self._demo[1]
        cred = self._sts.get(access_key_id)
        if cred is None:
            raise CredentialError(Reason.UNKNOWN_ACCESS_KEY, "Specified access key is not found.")
        if not security_token:
            raise CredentialError(Reason.TOKEN_MISSING, "The security token is required for an STS AccessKey.")
        if not secrets.compare_digest(security_token.encode(), cred.security_token.encode()):
            raise CredentialError(Reason.TOKEN_INVALID, "The security token you provided is invalid.")
        if cred.expiration <= time.time():
            raise CredentialError(Reason.TOKEN_EXPIRED, "The security token you provided has expired.")
        return cred.access_key_secret

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(c) for c in self._sts.values()]))
        tmp.chmod(0o600)
        tmp.replace(self._path)


def credential_store(ctx: SandboxContext) -> CredentialStore:
    """The one store per daemon, created by whichever service asks first."""
    store = ctx.services.get(SERVICE_KEY)
    if store is None:
        store = CredentialStore(
            ctx.account.access_key_id, ctx.account.access_key_secret, ctx.service_dir("sts") / "issued.json"
        )
        ctx.services[SERVICE_KEY] = store
    return store
