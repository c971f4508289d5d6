"""What the volume, Seldon and ingress operators share: Kubernetes access parameters, create-or-patch of a
manifest, and the wait (deferred to a watch trigger, or the same watch run in-process)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from elastic_inference import manifests
from elastic_inference.hooks.kubernetes import ApplyResult, KubeAccess, KubeHook
from elastic_inference.k8s_objects import Json, describe
from elastic_inference.specs.serving import ServingSpec
from elastic_inference.waits import default_deferrable, defer_timeout, raise_for_event

if TYPE_CHECKING:
    from airflow.sdk import Context

    from elastic_inference.triggers.kubernetes_watch import InlineWaiter, KubernetesWatchTrigger


def applied_manifest(obj: Json) -> str:
    """``obj`` as YAML for the task log; a Secret's ``data``/``stringData`` values replaced by ``<redacted>``."""
    import yaml

    shown = dict(obj)
    if obj.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if isinstance(obj.get(key), dict):
                shown[key] = {k: "<redacted>" for k in obj[key]}
    return yaml.safe_dump(shown, sort_keys=False, default_flow_style=False).rstrip()


class KubernetesApplyOperator(BaseOperator):
    """Base: apply manifests idempotently, then wait for a terminal state with a watch trigger.

    :param serving: the run's :class:`~elastic_inference.specs.ServingSpec` whole (templated, e.g. the ``plan``
        task's ``serving``): each operator takes the names it needs from it (namespace, object names); the single
        keywords still work without it.
    :param namespace: namespace of the objects. (templated)
    :param manifest: YAML (or a ``.yaml``/``.yml``/``.j2`` file on the DAG's template search path, rendered with
        the task context) replacing the default rendered manifest. (templated)
    :param template_dir: a directory searched before the packaged ``include/manifests`` templates.
    :param kubernetes_conn_id: cncf-kubernetes connection (used unless ``ack_conn_id`` is given). (templated)
    :param ack_conn_id: ``alibaba_ack`` connection: fetch the cluster's user kubeconfig from ACK instead. (templated)
    :param cluster_id: ACK cluster id for ``ack_conn_id`` (default: the connection's ``extra.cluster_id``). (templated)
    :param cluster_context: kubeconfig context to use.
    :param wait_for_completion: wait for the objects to be ready (else return right after applying).
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param timeout: seconds the wait may take before the task fails with a timeout.
    :param watch_timeout_seconds: server-side timeout of each watch request (it is resumed after).
    """

    template_fields: Sequence[str] = (
        "serving",
        "namespace",
        "manifest",
        "kubernetes_conn_id",
        "ack_conn_id",
        "cluster_id",
    )
    template_ext: Sequence[str] = (".yaml", ".yml", ".j2")
    template_fields_renderers = {"manifest": "yaml", "serving": "json"}
    ui_color = "#ff6a00"
    # One try never outlives its wait (deferral included): execution_timeout defaults to the wait's timeout plus
    # this much for the apply, so Airflow's retries do not multiply a wait nobody bounded. None: no default.
    execution_slack_seconds: float | None = 120

    def __init__(
        self,
        *,
        serving: Mapping[str, Any] | str | None = None,
        namespace: str = "default",
        manifest: str | None = None,
        template_dir: str | None = None,
        kubernetes_conn_id: str | None = "kubernetes_default",
        ack_conn_id: str | None = None,
        cluster_id: str | None = None,
        cluster_context: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        timeout: float = 600,
        watch_timeout_seconds: int = 60,
        **kwargs: Any,
    ) -> None:
        if wait_for_completion and self.execution_slack_seconds is not None and "execution_timeout" not in kwargs:
            kwargs["execution_timeout"] = timedelta(seconds=float(timeout) + self.execution_slack_seconds)
        super().__init__(**kwargs)
        self.serving = serving
        self.namespace = namespace
        self.manifest = manifest
        self.template_dir = template_dir
        self.kubernetes_conn_id = kubernetes_conn_id
        self.ack_conn_id = ack_conn_id
        self.cluster_id = cluster_id
        self.cluster_context = cluster_context
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        if timeout <= 0:
            raise ValueError(f"{type(self).__name__}: timeout must be > 0 seconds, got {timeout}")
        self.timeout = float(timeout)
        self.watch_timeout_seconds = watch_timeout_seconds
        self._waiter: InlineWaiter | None = None

    def serving_spec(self) -> ServingSpec | None:
        """The rendered ``serving`` spec (coerced, its namespace taken), or None when not given."""
        if self.serving is None:
            return None
        spec = ServingSpec.from_mapping(self.serving)
        self.namespace = spec.namespace
        return spec

    # -- access -------------------------------------------------------------------------------------------
    @property
    def access(self) -> KubeAccess:
        return KubeAccess(
            kubernetes_conn_id=self.kubernetes_conn_id,
            ack_conn_id=self.ack_conn_id,
            cluster_id=self.cluster_id,
            cluster_context=self.cluster_context,
        )

    def get_hook(self) -> KubeHook:
        return KubeHook(self.access)

    # -- manifests ----------------------------------------------------------------------------------------
    def manifest_objects(self, default: list[Json]) -> list[Json]:
        """The user's ``manifest`` (already rendered by Airflow) when given, else ``default``."""
        if not self.manifest:
            return default
        objs = manifests.parse_objects(self.manifest, source=f"{self.task_id}.manifest")
        for obj in objs:
            meta = obj.setdefault("metadata", {})
            if obj["kind"] not in ("PersistentVolume",):
                meta.setdefault("namespace", self.namespace)
        return objs

    def apply_all(self, hook: KubeHook, objs: list[Json]) -> list[ApplyResult]:
        results = []
        for obj in objs:
            result = hook.apply(obj)
            # The manifest actually applied (the rendered-template view only shows the operator's arguments),
            # a Secret's values redacted.
            self.log.info("%s: %s\n%s", describe(obj), result.action, applied_manifest(obj))
            results.append(result)
        return results

    def apply_with_primary(self, objs: list[Json], kind: str) -> ApplyResult:
        """Apply every object of a manifest that must hold exactly one ``kind``; that object's result."""
        found = sum(o["kind"] == kind for o in objs)
        if found != 1:
            raise AirflowFailException(f"{self.task_id}: the manifest must hold exactly one {kind}, found {found}")
        results = self.apply_all(self.get_hook(), objs)
        return next(r for o, r in zip(objs, results) if o["kind"] == kind)

    # -- waiting ------------------------------------------------------------------------------------------
    def deadline(self) -> float:
        return time.time() + self.timeout

    def wait_or_defer(self, context: Context, trigger: KubernetesWatchTrigger, carry: dict[str, Any]) -> Any:
        """Defer to ``trigger`` (resuming in :meth:`execute_complete` with ``carry``), or run its watch here."""
        if self.deferrable:
            trigger.carry = carry  # comes back inside the event (see KubernetesWatchTrigger)
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                kwargs={"carry": carry},
                timeout=defer_timeout(self.timeout),
            )
        from elastic_inference.triggers.kubernetes_watch import InlineWaiter

        self._waiter = InlineWaiter()
        try:
            event = self._waiter.wait(trigger)
        finally:
            self._waiter = None
        return self.execute_complete(context, event, carry=carry)

    def execute_complete(self, context: Context, event: Json, carry: dict[str, Any] | None = None) -> Any:
        done = raise_for_event(event, self.task_id)
        return self.result(context, done, carry or event.get("carry") or {})

    def result(self, context: Context, event: Json, carry: dict[str, Any]) -> Any:
        """The XCom return value once the wait succeeded (subclasses add their own fields)."""
        return {**carry, "ready_at": datetime.now(UTC).isoformat()}

    def on_kill(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()
