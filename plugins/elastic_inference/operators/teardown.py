"""Removes what a deploy run created, in reverse order, leaving shared things (node pool, model) alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class DeleteKubernetesObjectsOperator(BaseOperator):
    """Deletes the listed objects; absent ones are fine (a re-run of a teardown is a no-op).

    :param objects: ``[{"apiVersion", "kind", "name", "namespace"?}, ...]`` in deletion order (templated); an
        entry may itself be such a list (e.g. the plan's ``serving.serving_objects``, the serving backend's).
    :param enabled: skip everything unless true (templated, e.g. ``{{ params.teardown }}``).
    """

    template_fields: Sequence[str] = ("objects", "enabled", "kubernetes_conn_id")

    def __init__(
        self,
        *,
        objects: list[dict[str, str]] | str,
        enabled: bool | str = True,
        kubernetes_conn_id: str = "kubernetes_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.objects = objects
        self.enabled = enabled
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> list[str]:
        from elastic_inference.hooks.kubernetes import KubeAccess, KubeHook
        from elastic_inference.k8s_objects import ResourceRef
        from elastic_inference.specs import coerce

        if not coerce(self.enabled, "boolean", "enabled", optional=True):
            self.log.info("teardown not requested: keeping the deployment")
            return []
        hook = KubeHook(KubeAccess(kubernetes_conn_id=self.kubernetes_conn_id))
        deleted = []
        try:
            flat = [o for entry in self.objects for o in (entry if isinstance(entry, list) else [entry])]
            for obj in flat:
                ref = ResourceRef(obj["apiVersion"], obj["kind"])
                ns = obj.get("namespace") if ref.namespaced else None
                if hook.delete(ref, ns, obj["name"]):
                    deleted.append(f"{obj['kind']}/{obj['name']}")
                    self.log.info("deleted %s %s", obj["kind"], obj["name"])
                else:
                    self.log.info("%s %s already gone", obj["kind"], obj["name"])
        finally:
            hook.close()
        return deleted
