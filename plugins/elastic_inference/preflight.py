"""What ``plan`` checks in the environment before any task touches the cloud: read-only look-ups, never a write.

* the OSS volume's own read-only credential (``hooks.base.oss_volume_credential_problems``): the connection exists,
  holds a key, and is not the deploying identity's;
* the cluster answers, and the run's namespace exists there (a missing one is named as such, with the fix).

Each problem names the parameter or connection and the fix; :func:`check` is what the DAG passes to
``specs.run.plan_run``. The pure checks (names, ranges, unknown keys, the model's layout) are the specs' own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elastic_inference.specs.run import RunSpecs

NAMESPACE_FIX = "create it (kubectl create namespace {ns}) or set the namespace parameter to one that exists"


def namespace_problems(namespace: str, access: Any = None) -> list[str]:
    """The namespace must exist (one GET; an identity that may not read namespaces is given the benefit of the
    doubt - the apply reports it then)."""
    from elastic_inference.hooks.kubernetes import KubeAccess, KubeHook, KubernetesApiError
    from elastic_inference.k8s_objects import ResourceRef

    hook = KubeHook(access or KubeAccess(), retry_attempts=2)
    try:
        found = hook.get(ResourceRef("v1", "Namespace"), None, namespace)
    except KubernetesApiError as exc:
        if exc.status in (401, 403):
            return []
        return [f"namespace {namespace!r}: the cluster could not be asked whether it exists ({exc})"]
    except Exception as exc:  # noqa: BLE001 - a missing or broken kubernetes connection, named with the fix
        return [
            f"namespace {namespace!r}: cannot reach the cluster ({type(exc).__name__}: {exc}): check the"
            " kubernetes_default connection (kube_config_path / kube_config) or the ACK connection"
        ]
    finally:
        hook.close()
    if found is None:
        return [f"namespace {namespace!r} does not exist in the cluster: {NAMESPACE_FIX.format(ns=namespace)}"]
    if (found.get("metadata") or {}).get("deletionTimestamp"):
        return [f"namespace {namespace!r} is being deleted: wait for it to go and create it again, or use another"]
    return []


def check(
    specs: RunSpecs,
    *,
    ack_conn_id: str = "alibaba_ack_default",
    oss_volume_conn_id: str | None = None,
    access: Any = None,
) -> list[str]:
    """Every environment problem of a resolved run (empty: it may start)."""
    from elastic_inference.hooks.base import OSS_VOLUME_CONN_ID, oss_volume_credential_problems

    problems = oss_volume_credential_problems(oss_volume_conn_id or OSS_VOLUME_CONN_ID, ack_conn_id)
    problems += namespace_problems(specs.serving.namespace, access)
    return problems
