"""Who may call the sandbox's Alibaba Cloud stand-ins: the demo AccessKey, STS credentials it issued, and RAM
users' AccessKeys limited by a policy.

The CS and OSS stand-ins share one registry (``credential_store(ctx)``), the way every real Alibaba
service trusts the same RAM/STS back end. STS AccessKey ids start with ``STS.`` as real AssumeRole
ones do; each carries a SecurityToken and an expiration (wall-clock, because SDKs compare it with the
local clock). Failures are reported as a neutral ``CredentialError.reason`` that each service maps to
its own wire code (CS: ``InvalidAccessKeyId.NotFound`` ...; OSS: ``InvalidAccessKeyId`` ...).

RAM users (:meth:`CredentialStore.create_ram_key`, ``ack-sandbox ram-key``): a permanent AccessKey (``LTAI...``)
whose policy allows a set of OSS actions on one bucket (``*``: every bucket) and key prefix — by default only
reading (``READ_ONLY_ACTIONS``), what the OSS CSI plugin needs to mount a model. :meth:`CredentialStore.ram_key`
gives a key's policy to the service that enforces it (OSS: 403 ``AccessDenied``); the demo account and its STS
credentials own everything. Keys are kept in ``<state>/ram/keys.json`` and re-read when an unknown id arrives, so
a key minted by the CLI works at once in the running daemon.
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


# What a read-only RAM policy on a bucket/prefix allows (OSS RAM actions): get objects (HEAD included), list.
READ_ONLY_ACTIONS = ("oss:GetObject", "oss:ListObjects", "oss:GetBucketInfo", "oss:GetBucketLocation")


@dataclass(frozen=True)
class RamKey:
    """A RAM user's AccessKey and its policy: ``actions`` allowed on ``bucket`` (``*`` = any) under ``prefix``."""

    access_key_id: str
    access_key_secret: str
    user: str
    bucket: str = "*"
    prefix: str = ""
    actions: tuple[str, ...] = READ_ONLY_ACTIONS

    def allows(self, action: str, bucket: str, key: str) -> bool:
        """Object actions need the key under ``prefix``; bucket-level ones (list, info) only the bucket."""
        if action not in self.actions or (self.bucket != "*" and bucket != self.bucket):
            return False
        return not key or key.startswith(self.prefix)

    def public(self) -> dict[str, object]:
        """Everything but the secret (for status output and logs)."""
        return {k: v for k, v in asdict(self).items() if k != "access_key_secret"}


class CredentialStore:
    """The demo AccessKey pair, the STS credentials issued so far and the RAM users' keys, persisted in the state
    dir."""

    def __init__(self, demo_id: str, demo_secret: str, path: Path, ram_path: Path | None = None) -> None:
        self._demo = (demo_id, demo_secret)
        self._path = path
        self._ram_path = ram_path
        self._lock = threading.Lock()
        self._sts: dict[str, StsCredential] = {}
        self._ram: dict[str, RamKey] = {}
        if path.exists():
            for item in json.loads(path.read_text()):
                cred = StsCredential(**item)
                self._sts[cred.access_key_id] = cred
        self._load_ram()

    # -- RAM users -----------------------------------------------------------------------------------------
    def _load_ram(self) -> None:
        if self._ram_path is None or not self._ram_path.exists():
            return
        items = json.loads(self._ram_path.read_text())
        self._ram = {i["access_key_id"]: RamKey(**{**i, "actions": tuple(i["actions"])}) for i in items}

    def create_ram_key(
        self, user: str, *, bucket: str = "*", prefix: str = "", actions: tuple[str, ...] = READ_ONLY_ACTIONS
    ) -> RamKey:
        """A new AccessKey for RAM user ``user`` with the given policy (default: read-only)."""
        if self._ram_path is None:
            raise ValueError("this credential store keeps no RAM users")
        key = RamKey(
            access_key_id="LTAI5t" + secrets.token_hex(9),
            access_key_secret=secrets.token_urlsafe(22),
            user=user,
            bucket=bucket or "*",
            prefix=prefix.lstrip("/"),
            actions=tuple(actions),
        )
        with self._lock:
            self._load_ram()
            self._ram[key.access_key_id] = key
            self._ram_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._ram_path.with_suffix(".tmp")
            tmp.write_text(json.dumps([asdict(k) for k in self._ram.values()], indent=2))
            tmp.chmod(0o600)
            tmp.replace(self._ram_path)
        return key

    def ram_key(self, access_key_id: str) -> RamKey | None:
        """The RAM user's key and policy, or None for the account itself (and its STS credentials)."""
        return self._ram.get(access_key_id)

    def ram_keys(self, user: str | None = None) -> list[RamKey]:
        return [k for k in self._ram.values() if user is None or k.user == user]

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

    def secret_for(self, access_key_id: str, security_token: str | None, *, service: str | None = None) -> str:
        """The secret to verify a signature with, or ``CredentialError`` naming why the caller is refused.

        ``service`` (``"oss"``): the service asking, which enforces RAM policies itself. RAM users' keys are
        known only to services their policy names (a read-only OSS key is unknown to CS: it can never create a
        node pool or fetch a kubeconfig)."""
        if access_key_id == self._demo[0]:
            return self._demo[1]
        if access_key_id not in self._ram and not access_key_id.startswith("STS."):
            with self._lock:
                self._load_ram()  # minted by the CLI since the daemon started
        if (ram := self._ram.get(access_key_id)) is not None:
            if service is None or not any(a.startswith(service + ":") for a in ram.actions):
                raise CredentialError(Reason.UNKNOWN_ACCESS_KEY, "Specified access key is not found.")
            return ram.access_key_secret
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
            ctx.account.access_key_id,
            ctx.account.access_key_secret,
            ctx.service_dir("sts") / "issued.json",
            ram_keys_path(ctx.state_dir),
        )
        ctx.services[SERVICE_KEY] = store
    return store


def ram_keys_path(state_dir: Path) -> Path:
    """Where a state directory keeps its RAM users' keys (read by the daemon, written by it and the CLI)."""
    return state_dir / "ram" / "keys.json"


OSS_VOLUME_USER = "oss-volume-reader"


def volume_reader_key(store: CredentialStore) -> RamKey:
    """The read-only key the sandbox hands out as the OSS volume's connection (created once per state dir)."""
    existing = store.ram_keys(OSS_VOLUME_USER)
    return existing[0] if existing else store.create_ram_key(OSS_VOLUME_USER)
