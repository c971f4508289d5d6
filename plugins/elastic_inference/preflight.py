"""What ``plan`` checks in the environment before any task touches the cloud: read-only look-ups, never a write.

* the OSS volume's own read-only credential (``hooks.base.oss_volume_credential_problems``): the connection exists,
  holds a key, and is not the deploying identity's;
* the cluster answers, and the run's namespace exists there (a missing one is named as such, with the fix);
* an ``oss://`` model_source is a complete SavedModel version folder (listed, not read: the same rules as for a
  local directory, ``model_layout.remote_saved_model_problems``).

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


def oss_source_problems(source: str, ack_conn_id: str = "alibaba_ack_default") -> list[str]:
    """List the ``oss://`` source's version folder and check its layout (ListObjectsV2 only)."""
    from elastic_inference.exceptions import AlibabaCloudApiError, ModelLayoutError
    from elastic_inference.hooks.oss import OssHook
    from elastic_inference.model_layout import parse_oss_source, remote_saved_model_problems

    try:
        location = parse_oss_source(source)
    except ModelLayoutError as exc:
        return [str(exc)]
    try:
        hook = OssHook(ack_conn_id)
        keys = {
            o.key[len(location.key_prefix) :]
            for o in hook.list_objects(location.bucket, location.key_prefix, max_objects=10_000)
        }
    except AlibabaCloudApiError as exc:
        if exc.code == "NoSuchBucket":
            return [f"model_source {source!r}: bucket {location.bucket!r} does not exist: fix the bucket name"]
        return [f"model_source {source!r}: cannot list it in OSS ({exc}): check the {ack_conn_id} connection"]
    except Exception as exc:  # noqa: BLE001 - a missing/broken connection, named with the fix
        return [
            f"model_source {source!r}: cannot reach OSS ({type(exc).__name__}: {exc}): check the {ack_conn_id}"
            " connection"
        ]
    return remote_saved_model_problems(location, keys)


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
    if specs.model.in_oss and not specs.rollout.rollback_to:
        problems += oss_source_problems(specs.model.source, ack_conn_id)
    return problems
