"""Seed step 3: an OSS-backed volume — a Secret with the OSS credentials, a static PV of the OSS CSI driver that
references it (``nodePublishSecretRef``, never inline ``akId``/``akSecret``), and a PVC bound to that PV.

The Secret holds the volume's own read-only credential (connection ``oss_volume_conn_id``, default
``alibaba_oss_volume``), never the deploying identity's key; with ``oss_auth="rrsa"`` there is no Secret at all and
the CSI plugin assumes the RAM role ``rrsa_role_name`` through the cluster's OIDC provider (ACK RRSA)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from elastic_inference import manifests
from elastic_inference.hooks.base import OSS_VOLUME_CONN_ID, deprecated_alias, oss_volume_credential_problems
from elastic_inference.k8s_objects import Json, secret_manifest
from elastic_inference.operators._kubernetes import KubernetesApplyOperator
from elastic_inference.specs.model import ModelSpec
from elastic_inference.triggers.volume import PvcBoundTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from elastic_inference.hooks.base import AlibabaCloudSettings

DEFAULT_OTHER_OPTS = "-o max_stat_cache_size=0 -o allow_other"


def oss_secret_data(settings: AlibabaCloudSettings) -> dict[str, str]:
    """Secret keys as the OSS CSI plugin reads them (ref. §3): ``akId``/``akSecret``, or for temporary STS
    credentials the standard ``AccessKeyId``/``AccessKeySecret``/``SecurityToken``."""
    if settings.credential_type == "access_key":
        return {"akId": settings.access_key_id, "akSecret": settings.access_key_secret}
    cred = settings.credential_client().get_credential()
    if not cred.access_key_id or not cred.access_key_secret:
        raise AirflowFailException("the Alibaba Cloud credential chain returned no AccessKey pair for the OSS Secret")
    if cred.security_token:
        return {
            "AccessKeyId": cred.access_key_id,
            "AccessKeySecret": cred.access_key_secret,
            "SecurityToken": cred.security_token,
        }
    return {"akId": cred.access_key_id, "akSecret": cred.access_key_secret}


def default_oss_url(settings: AlibabaCloudSettings) -> str:
    """The connection's OSS endpoint override (the sandbox's OSS), else the region's VPC-internal endpoint."""
    if settings.oss_endpoint is not None:
        return settings.oss_endpoint.url
    return f"oss-{settings.region_id}-internal.aliyuncs.com"


class CreateOssVolumeOperator(KubernetesApplyOperator):
    """Create or update the OSS Secret, PV and PVC, then wait until the claim is Bound.

    Fails fast when the claim is Lost, the PV is Failed/Released/claimed by another claim, or the PV
    controller rejects the pairing (VolumeMismatch). Returns names, uids and what was done to each object;
    the credentials never leave the Secret (not in logs, XCom or rendered templates).

    With ``serving=`` (see the base class) and ``model=`` (the run's
    :class:`~elastic_inference.specs.ModelSpec`, templated), namespace, PV, PVC and Secret names come from the
    serving spec and bucket and path (``/<prefix>``) from the model spec.

    :param bucket: OSS bucket holding the models. (templated)
    :param path: directory inside the bucket the volume exposes, e.g. ``/models``. (templated)
    :param pv_name: PersistentVolume name (also the CSI ``volumeHandle``). (templated)
    :param pvc_name: PersistentVolumeClaim name. (templated)
    :param secret_name: Secret name (default ``<pv_name>-oss``). (templated)
    :param storage: capacity of PV and PVC. (templated)
    :param access_mode: ``ReadOnlyMany`` by default (serving only reads).
    :param oss_url: endpoint the nodes mount from (default: the connection's ``oss_endpoint`` or
        ``oss-<region>-internal.aliyuncs.com``). (templated)
    :param other_opts: ossfs mount options.
    :param oss_volume_conn_id: ``alibaba_ack`` connection whose key goes into the Secret: a RAM user allowed only
        to read the model bucket/prefix (default ``alibaba_oss_volume``). A missing connection, or one holding
        the deploying connection's (``ack_conn_id``) own key, fails before anything is created.
        (``secret_conn_id``: its deprecated name.)
    :param allow_deploying_key: accept the deploying identity's key for the Secret (throw-away accounts only).
    :param oss_auth: ``secret`` (the connection's key in a Secret) or ``rrsa`` (no Secret: the CSI plugin assumes
        ``rrsa_role_name`` with the pod's OIDC token; ACK clusters with RRSA enabled).
    :param rrsa_role_name: the RAM role for ``oss_auth="rrsa"`` (trusting the cluster's OIDC provider, read-only
        on the model prefix).
    """

    template_fields: Sequence[str] = (
        *KubernetesApplyOperator.template_fields,
        "model",
        "bucket",
        "path",
        "pv_name",
        "pvc_name",
        # Not "secret_name": Airflow masks fields named like secrets; this is only the Secret object's name.
        "credentials_object",
        "oss_url",
        "storage",
    )
    template_fields_renderers = {**KubernetesApplyOperator.template_fields_renderers, "model": "json"}

    def __init__(
        self,
        *,
        model: Mapping[str, Any] | str | None = None,
        bucket: str | None = None,
        pv_name: str | None = None,
        pvc_name: str | None = None,
        path: str = "/models",
        secret_name: str | None = None,
        storage: str = "5Gi",
        access_mode: str = "ReadOnlyMany",
        oss_url: str | None = None,
        other_opts: str = DEFAULT_OTHER_OPTS,
        oss_volume_conn_id: str | None = OSS_VOLUME_CONN_ID,
        allow_deploying_key: bool = False,
        oss_auth: str = "secret",
        rrsa_role_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "execution_timeout" not in kwargs:  # one try never outlives its wait (deferral included)
            kwargs["execution_timeout"] = timedelta(seconds=float(kwargs.get("timeout", 600)) + 120)
        legacy = deprecated_alias(kwargs, None, type(self).__name__, new="oss_volume_conn_id")  # alibaba_cloud_conn_id
        legacy = deprecated_alias(kwargs, legacy, type(self).__name__, old="secret_conn_id", new="oss_volume_conn_id")
        super().__init__(**kwargs)
        if oss_auth not in ("secret", "rrsa"):
            raise ValueError(f"{type(self).__name__}: oss_auth must be 'secret' or 'rrsa', not {oss_auth!r}")
        if oss_auth == "rrsa" and not rrsa_role_name:
            raise ValueError(f"{type(self).__name__}: oss_auth='rrsa' needs rrsa_role_name (the RAM role to assume)")
        self.model = model
        self.bucket = bucket
        self.path = path
        self.pv_name = pv_name
        self.pvc_name = pvc_name
        self.credentials_object = secret_name
        self.storage = storage
        self.access_mode = access_mode
        self.oss_url = oss_url
        self.other_opts = other_opts
        self.oss_volume_conn_id = legacy or oss_volume_conn_id or OSS_VOLUME_CONN_ID
        self.allow_deploying_key = allow_deploying_key
        self.oss_auth = oss_auth
        self.rrsa_role_name = rrsa_role_name

    @property
    def secret_conn_id(self) -> str:
        """Deprecated name of :attr:`oss_volume_conn_id`."""
        return self.oss_volume_conn_id

    def _deploy_conn_id(self) -> str:
        from elastic_inference.hooks.base import AlibabaCloudBaseHook

        return self.ack_conn_id or AlibabaCloudBaseHook.default_conn_name

    def _settings(self) -> AlibabaCloudSettings:
        """The volume connection's settings (its key, endpoint and region); with RRSA, the deploying one's
        (endpoint and region only: no key leaves it)."""
        from elastic_inference.hooks.base import AlibabaCloudBaseHook

        if self.oss_auth == "rrsa":
            return AlibabaCloudBaseHook(self._deploy_conn_id()).settings
        problems = oss_volume_credential_problems(
            self.oss_volume_conn_id, self._deploy_conn_id(), allow_deploying_key=self.allow_deploying_key
        )
        if problems:
            raise AirflowFailException(f"{self.task_id}: " + "; ".join(problems))
        return AlibabaCloudBaseHook(self.oss_volume_conn_id).settings

    def default_objects(self, settings: AlibabaCloudSettings, secret_name: str) -> list[Json]:
        variables = dict(
            pv_name=self.pv_name,
            pvc_name=self.pvc_name,
            namespace=self.namespace,
            storage=self.storage,
            access_mode=self.access_mode,
            secret_name=secret_name,
            bucket=self.bucket,
            path=self.path,
            oss_url=self.oss_url or default_oss_url(settings),
            other_opts=self.other_opts,
            auth_type=self.oss_auth,
            rrsa_role_name=self.rrsa_role_name or "",
        )
        return manifests.render("pv.yaml.j2", variables, self.template_dir) + manifests.render(
            "pvc.yaml.j2", variables, self.template_dir
        )

    def apply_specs(self) -> None:
        """Take the names from the (rendered) serving and model specs, when given."""
        serving = self.serving_spec()
        if serving is not None:
            self.pv_name, self.pvc_name = serving.pv_name, serving.pvc_name
            self.credentials_object = self.credentials_object or serving.secret_name
        if self.model is not None:
            model = ModelSpec.from_mapping(self.model)
            self.bucket, self.path = model.bucket, "/" + model.prefix.strip("/")

    def execute(self, context: Context) -> Any:
        self.apply_specs()
        for field in ("bucket", "pv_name", "pvc_name"):
            if not getattr(self, field):
                raise AirflowFailException(f"{self.task_id}: {field} is empty; pass the {field} to the operator")
        settings = self._settings()
        secret_name = self.credentials_object or f"{self.pv_name}-oss"
        objs = self.manifest_objects(self.default_objects(settings, secret_name))
        kinds = {o["kind"] for o in objs}
        if not {"PersistentVolume", "PersistentVolumeClaim"} <= kinds:
            raise AirflowFailException(
                f"{self.task_id}: the manifest must contain a PersistentVolume and a"
                f" PersistentVolumeClaim (found {sorted(kinds)})"
            )
        for obj in objs:
            if obj["kind"] == "PersistentVolume":
                attrs = ((obj.get("spec") or {}).get("csi") or {}).get("volumeAttributes") or {}
                if {"akid", "aksecret"} & {k.lower() for k in attrs}:
                    raise AirflowFailException(
                        f"{self.task_id}: the PV manifest carries inline akId/akSecret; remove"
                        " them - credentials go in the Secret named by nodePublishSecretRef"
                    )
        hook = self.get_hook()
        secret = None
        if self.oss_auth == "secret":
            secret = hook.apply(secret_manifest(secret_name, self.namespace, oss_secret_data(settings)))
            self.log.info(
                "Secret %s/%s (key of connection %s): %s",
                self.namespace,
                secret_name,
                self.oss_volume_conn_id,
                secret.action,
            )
        results = self.apply_all(hook, objs)
        pv = next(r for o, r in zip(objs, results) if o["kind"] == "PersistentVolume")
        pvc = next(r for o, r in zip(objs, results) if o["kind"] == "PersistentVolumeClaim")
        carry = {
            "namespace": self.namespace,
            "secret": secret_name if secret else None,
            "pv": pv.object["metadata"]["name"],
            "pvc": pvc.object["metadata"]["name"],
            "uids": {"secret": secret.uid if secret else None, "pv": pv.uid, "pvc": pvc.uid},
            "actions": {"secret": secret.action if secret else "none (rrsa)", "pv": pv.action, "pvc": pvc.action},
            "resource_versions": {
                "secret": secret.resource_version if secret else None,
                "pv": pv.resource_version,
                "pvc": pvc.resource_version,
            },
        }
        if not self.wait_for_completion:
            return carry
        trigger = PvcBoundTrigger(
            access=self.access.to_dict(),
            namespace=self.namespace,
            name=carry["pvc"],
            pv_name=carry["pv"],
            deadline=self.deadline(),
            watch_timeout_seconds=self.watch_timeout_seconds,
        )
        return self.wait_or_defer(context, trigger, carry)

    def result(self, context: Context, event: Json, carry: dict[str, Any]) -> Any:
        return {**carry, "phase": event.get("phase")}
