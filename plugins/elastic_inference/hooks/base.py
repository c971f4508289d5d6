"""Credentials and endpoints shared by the CS and OSS hooks, read from one ``alibaba_ack`` connection.

Connection layout: login = AccessKey ID, password = AccessKey secret, extras ``security_token`` (STS),
``role_arn`` + ``role_session_name`` (assume a RAM role with the AccessKey pair), ``region_id``,
``cluster_id``, ``cs_endpoint``, ``oss_endpoint``, the retry knobs ``retry_max_attempts``,
``retry_initial_wait``, ``retry_max_wait``, and ``time_scale``: set only by a stand-in that runs the cloud's
delays N times faster (the sandbox writes it), so the scale report can say so; absent on a real cluster. With
no AccessKey at all the Alibaba default credential chain (env vars, config file, ECS RAM role, OIDC/RRSA) is
used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from airflow.sdk import BaseHook

from elastic_inference.exceptions import AlibabaCloudCredentialsError
from elastic_inference.hooks.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from alibabacloud_credentials.client import Client as CredentialClient

DEFAULT_REGION = "cn-beijing"


@dataclass(frozen=True)
class Endpoint:
    """A service endpoint split the way the SDKs want it: host[:port] and scheme apart (ref. §1.1)."""

    host: str
    scheme: str

    @classmethod
    def parse(cls, value: str, field_name: str) -> Endpoint:
        value = value.strip()
        parsed = urlparse(value if "://" in value else f"https://{value}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"connection extra {field_name}={value!r} is not an endpoint: use host[:port] or http(s)://host[:port]"
            )
        if parsed.path not in ("", "/"):
            raise ValueError(f"connection extra {field_name}={value!r} must not contain a path ({parsed.path!r})")
        return cls(host=parsed.netloc, scheme=parsed.scheme)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


def _time_scale(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = 0.0
    if not scale > 0:
        raise ValueError(f"connection extra time_scale={value!r} must be a number > 0 (or left out on a real cluster)")
    return scale


@dataclass(frozen=True)
class AlibabaCloudSettings:
    """What a connection says. Secrets are kept out of ``repr`` so they never reach a log line."""

    access_key_id: str = ""
    access_key_secret: str = field(default="", repr=False)
    security_token: str = field(default="", repr=False)
    role_arn: str = ""
    role_session_name: str = "airflow-elastic-inference"
    region_id: str = DEFAULT_REGION
    cluster_id: str = ""
    cs_endpoint: Endpoint | None = None
    oss_endpoint: Endpoint | None = None
    sts_endpoint: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    time_scale: float | None = None  # a stand-in's compressed cloud delays; None: a real cloud

    @classmethod
    def from_connection(cls, conn: Connection) -> AlibabaCloudSettings:
        extras: dict[str, Any] = dict(conn.extra_dejson or {})

        def extra(key: str) -> str:
            value = extras.get(key)
            return str(value).strip() if value not in (None, "") else ""

        ak, sk = (conn.login or "").strip(), (conn.password or "").strip()
        if bool(ak) != bool(sk):
            missing = "password (AccessKey secret)" if ak else "login (AccessKey ID)"
            raise AlibabaCloudCredentialsError(
                f"connection {conn.conn_id!r} has only half an AccessKey pair: set its {missing}",
                code="IncompleteCredentials",
            )
        token = extra("security_token")
        if token and not ak:
            raise AlibabaCloudCredentialsError(
                f"connection {conn.conn_id!r} has extra.security_token but no AccessKey pair: an STS token is"
                " only valid with the temporary AccessKey ID/secret it was issued with (login/password)",
                code="IncompleteCredentials",
            )
        if extra("role_arn") and not ak:
            raise AlibabaCloudCredentialsError(
                f"connection {conn.conn_id!r} has extra.role_arn but no AccessKey pair to assume it with",
                code="IncompleteCredentials",
            )
        try:
            cs = Endpoint.parse(extra("cs_endpoint"), "cs_endpoint") if extra("cs_endpoint") else None
            oss = Endpoint.parse(extra("oss_endpoint"), "oss_endpoint") if extra("oss_endpoint") else None
            retry = RetryPolicy.from_extras(extras)
            time_scale = _time_scale(extras.get("time_scale"))
        except ValueError as e:
            raise AlibabaCloudCredentialsError(f"connection {conn.conn_id!r}: {e}", code="InvalidConnection") from e
        return cls(
            access_key_id=ak,
            access_key_secret=sk,
            security_token=token,
            role_arn=extra("role_arn"),
            role_session_name=extra("role_session_name") or cls.role_session_name,
            region_id=extra("region_id") or DEFAULT_REGION,
            cluster_id=extra("cluster_id"),
            cs_endpoint=cs,
            oss_endpoint=oss,
            sts_endpoint=extra("sts_endpoint"),
            retry=retry,
            time_scale=time_scale,
        )

    @property
    def credential_type(self) -> str:
        if self.role_arn:
            return "ram_role_arn"
        if self.security_token:
            return "sts"
        if self.access_key_id:
            return "access_key"
        return "default"

    def credential_client(self) -> CredentialClient:
        """An ``alibabacloud_credentials`` client for this connection (AK, STS, RAM role ARN or default chain).

        For ``ram_role_arn`` the provider calls STS AssumeRole (real cloud only; ``sts_endpoint`` extra to
        override) and refreshes the temporary key before it expires.
        """
        from alibabacloud_credentials.client import Client as CredentialClient
        from alibabacloud_credentials.models import Config as CredentialConfig

        kind = self.credential_type
        if kind == "default":
            return CredentialClient()
        cfg = CredentialConfig(
            type=kind,
            access_key_id=self.access_key_id,
            access_key_secret=self.access_key_secret,
            security_token=self.security_token or None,
        )
        if kind == "ram_role_arn":
            cfg.role_arn = self.role_arn
            cfg.role_session_name = self.role_session_name
            cfg.sts_endpoint = self.sts_endpoint or None
        return CredentialClient(cfg)


def deprecated_alias(
    kwargs: dict[str, Any], value: Any, owner: str, *, old: str = "alibaba_cloud_conn_id", new: str = "ack_conn_id"
) -> Any:
    """``value``, or the deprecated keyword ``old`` when given (popped from ``kwargs``, with a DeprecationWarning)."""
    legacy = kwargs.pop(old, None)
    if legacy is None:
        return value
    warnings.warn(f"{owner}: {old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)
    return legacy


def ack_conn_id_from(ack_conn_id: str | None, kwargs: dict[str, Any], owner: str) -> str:
    """The ACK connection id: ``ack_conn_id``, or the deprecated ``alibaba_cloud_conn_id=`` in ``kwargs``."""
    return str(deprecated_alias(kwargs, ack_conn_id, owner) or AlibabaCloudBaseHook.default_conn_name)


class AlibabaCloudBaseHook(BaseHook):
    """Reads the ``alibaba_ack`` connection into :class:`AlibabaCloudSettings`; subclasses build SDK clients."""

    conn_name_attr = "ack_conn_id"
    default_conn_name = "alibaba_ack_default"
    conn_type = "alibaba_ack"
    hook_name = "Alibaba Cloud (ACK / OSS)"

    def __init__(
        self,
        ack_conn_id: str = default_conn_name,
        *,
        region_id: str | None = None,
        retry_policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        ack_conn_id = ack_conn_id_from(ack_conn_id, kwargs, type(self).__name__)
        super().__init__(**kwargs)
        self.ack_conn_id = ack_conn_id
        self._region_override = region_id
        self._retry_override = retry_policy
        self._settings: AlibabaCloudSettings | None = None

    def _apply_overrides(self, settings: AlibabaCloudSettings) -> AlibabaCloudSettings:
        from dataclasses import replace

        changes: dict[str, Any] = {}
        if self._region_override:
            changes["region_id"] = self._region_override
        if self._retry_override is not None:
            changes["retry"] = self._retry_override
        return replace(settings, **changes) if changes else settings

    @property
    def settings(self) -> AlibabaCloudSettings:
        """Sync access (workers). Triggers must use :meth:`aget_settings` instead."""
        if self._settings is None:
            conn = self.get_connection(self.ack_conn_id)
            self._settings = self._apply_overrides(AlibabaCloudSettings.from_connection(conn))
        return self._settings

    async def aget_settings(self) -> AlibabaCloudSettings:
        """Async access for triggers: ``aget_connection`` never blocks the triggerer's event loop."""
        if self._settings is None:
            conn = await self.aget_connection(self.ack_conn_id)
            self._settings = self._apply_overrides(AlibabaCloudSettings.from_connection(conn))
        return self._settings

    @property
    def alibaba_cloud_conn_id(self) -> str:
        """Deprecated name of :attr:`ack_conn_id`."""
        return self.ack_conn_id

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.settings.retry


# ---- the OSS volume's own, read-only credential ----------------------------------------------------------------

OSS_VOLUME_CONN_ID = "alibaba_oss_volume"
OSS_VOLUME_FIX = (
    "create an alibaba_ack connection '{conn}' with the AccessKey of a RAM user that may only read the model "
    "bucket/prefix (policy: oss:GetObject + oss:ListObjects on acs:oss:*:*:<bucket>[/<prefix>*]; the sandbox "
    "writes one to airflow.env), or use RRSA (volume oss_auth='rrsa', rrsa_role_name=<RAM role>) on a cluster "
    "with RRSA enabled"
)


def oss_volume_credential_problems(
    oss_volume_conn_id: str | None, deploy_conn_id: str | None, *, allow_deploying_key: bool = False
) -> list[str]:
    """Why the PV's Secret cannot get ``oss_volume_conn_id``'s key (empty: it can): the connection is missing, has
    no key to put in a Secret, or holds the deploying identity's own AccessKey (which can create node pools and
    fetch the cluster's kubeconfig — never handed to the cluster unless ``allow_deploying_key``)."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    conn_id = oss_volume_conn_id or OSS_VOLUME_CONN_ID
    fix = OSS_VOLUME_FIX.format(conn=conn_id)
    try:
        volume = AlibabaCloudSettings.from_connection(BaseHook.get_connection(conn_id))
    except AirflowNotFoundException:
        return [f"oss_volume_conn_id: connection {conn_id!r} does not exist: {fix}"]
    except ValueError as exc:
        return [f"oss_volume_conn_id: connection {conn_id!r} is invalid ({exc}): {fix}"]
    if volume.credential_type == "default":
        return [f"oss_volume_conn_id: connection {conn_id!r} has no AccessKey for the volume's Secret: {fix}"]
    if allow_deploying_key or not deploy_conn_id:
        return []
    try:
        deploy = AlibabaCloudSettings.from_connection(BaseHook.get_connection(deploy_conn_id))
    except (AirflowNotFoundException, ValueError):
        return []  # the deploying connection's own problems are reported where it is used
    if conn_id == deploy_conn_id or (volume.access_key_id and volume.access_key_id == deploy.access_key_id):
        return [
            f"oss_volume_conn_id: connection {conn_id!r} holds the deploying identity's AccessKey (that of"
            f" {deploy_conn_id!r}), which would be copied into a Secret in the workload namespace: {fix}"
            " (allow_deploying_key=True only for a throw-away test account)"
        ]
    return []
