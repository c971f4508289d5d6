"""Kubernetes access for the deploy operators and their triggers.

Where the cluster credentials come from (:class:`KubeAccess`):

* the cncf-kubernetes connection (``kubernetes_conn_id``, default ``kubernetes_default``; extras
  ``kube_config_path`` / ``kube_config`` / ``in_cluster`` / ``cluster_context``), through the provider's
  ``KubernetesHook`` / ``AsyncKubernetesHook``; or
* an ACK cluster id with an ``alibaba_ack`` connection (``ack_conn_id``): the user kubeconfig is fetched with
  DescribeClusterUserKubeconfig and kept in memory only. It is never logged, written to XCom or put into
  trigger kwargs (a trigger fetches it again itself).

Requests go to plain REST paths built from apiVersion/kind (``k8s_objects.ResourceRef``) through the client's
``call_api``, so one code path serves core kinds and CRDs. Transient failures (429, 5xx, connection errors)
are retried with tenacity; 409 is not retried (unlike the cncf provider's ``generic_api_retry``): an
AlreadyExists on create means "someone created it", which :meth:`KubeHook.apply` handles by reading it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Literal

import tenacity
import yaml
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from elastic_inference.exceptions import (  # noqa: F401 - the wait errors are re-exported here
    ElasticInferenceError,
    ResourceFailedError,
    ResourceWaitTimeout,
    TerminalError,
)
from elastic_inference.k8s_objects import Json, ResourceRef, describe, desired_body, is_subset, ref_of

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
FIELD_MANAGER = "elastic-inference"
MERGE_PATCH = "application/merge-patch+json"


class KubernetesApiError(ElasticInferenceError):
    """A Kubernetes API call failed; carries the HTTP status, the Status reason and its message.

    ``transient``: the call may succeed later (429, 5xx, or no answer at all: refused, reset, timed out — an API
    server restart or a control-plane upgrade); a wait keeps trying such errors until its own deadline.
    """

    transient_default = True

    def __init__(self, message: str, *, status: int | None = None, reason: str = "", operation: str = "") -> None:
        self.status = status
        self.reason = reason
        self.operation = operation
        self.transient = self.transient_default and (status is None or status in TRANSIENT_STATUS)
        super().__init__(
            f"{operation + ' failed: ' if operation else ''}"
            f"{'HTTP ' + str(status) + ' ' if status else ''}{reason + ': ' if reason else ''}{message}"
        )


class KubernetesTerminalError(KubernetesApiError, TerminalError):
    """4xx other than 429: retrying cannot help (invalid manifest, forbidden, immutable field, ...)."""

    transient_default = False


def _status_parts(exc: Exception) -> tuple[int | None, str, str]:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", "") or ""
    if not isinstance(reason, str):  # urllib3's MaxRetryError.reason is the exception underneath, not a Status reason
        reason = ""
    message = str(getattr(exc, "body", "") or "")
    try:
        body = json.loads(message)
        if isinstance(body, dict):
            reason = body.get("reason") or reason
            message = body.get("message") or message
    except (ValueError, TypeError):
        pass
    return status, reason, message or str(exc)


_HINTS = {
    401: " - the cluster rejected the credentials: check the kubeconfig (connection extra kube_config_path /"
    " kube_config, or the ACK connection that fetches it); tokens may have expired",
    403: " - the identity lacks RBAC permission for this request: grant it (Role/ClusterRole) or use another"
    " kubeconfig context",
    422: " - the API server rejected the object: fix the named field (immutable fields need a new object name)",
}


def to_api_error(exc: Exception, operation: str) -> KubernetesApiError:
    status, reason, message = _status_parts(exc)
    message += _HINTS.get(status or 0, "")
    if status is not None and 400 <= status < 500 and status not in TRANSIENT_STATUS:
        return KubernetesTerminalError(message, status=status, reason=reason, operation=operation)
    return KubernetesApiError(message, status=status, reason=reason, operation=operation)


def is_transient(exc: BaseException) -> bool:
    """429/5xx API errors and transport failures (refused, reset, timeouts) are worth retrying — also once a
    hook has given up on them (:class:`KubernetesApiError` with ``transient``), so a wait rides out an outage."""
    if isinstance(exc, KubernetesApiError):
        return exc.transient
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        return status in TRANSIENT_STATUS
    import aiohttp
    import urllib3

    return isinstance(
        exc, (urllib3.exceptions.HTTPError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, TimeoutError)
    )


def _retrying(attempts: int) -> dict[str, Any]:
    return {
        "stop": tenacity.stop_after_attempt(attempts),
        "wait": tenacity.wait_exponential_jitter(initial=0.5, max=10),
        "retry": tenacity.retry_if_exception(is_transient),
        "reraise": True,
        "before_sleep": tenacity.before_sleep_log(log, logging.WARNING),
    }


@dataclass(frozen=True)
class KubeAccess:
    """How to reach the cluster; plain strings only, so it travels in trigger kwargs without secrets.

    ``ack_conn_id`` set → the kubeconfig is fetched from ACK for ``cluster_id`` (or the connection's
    ``extra.cluster_id``); otherwise the cncf-kubernetes connection ``kubernetes_conn_id`` is used.
    """

    kubernetes_conn_id: str | None = "kubernetes_default"
    ack_conn_id: str | None = None
    cluster_id: str | None = None
    cluster_context: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> KubeAccess:
        return cls(**(data or {}))

    @property
    def uses_ack(self) -> bool:
        return bool(self.ack_conn_id)


def _kubeconfig_dict(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:  # the message may quote the document: keep it out
        raise AirflowFailException("the kubeconfig returned by ACK is not valid YAML") from e
    if not isinstance(data, dict) or not data.get("clusters"):
        raise AirflowFailException("the kubeconfig returned by ACK has no clusters")
    return data


def fetch_ack_kubeconfig(access: KubeAccess) -> dict[str, Any]:
    """DescribeClusterUserKubeconfig through the ACK hook (sync)."""
    from elastic_inference.hooks.ack import AckHook

    hook = AckHook(access.ack_conn_id or AckHook.default_conn_name, cluster_id=access.cluster_id)
    return _kubeconfig_dict(hook.get_user_kubeconfig())


async def afetch_ack_kubeconfig(access: KubeAccess) -> dict[str, Any]:
    """DescribeClusterUserKubeconfig from a trigger, without blocking the event loop."""
    from elastic_inference.hooks.ack import AckAsyncHook

    hook = AckAsyncHook(access.ack_conn_id or AckAsyncHook.default_conn_name, cluster_id=access.cluster_id)
    try:
        return _kubeconfig_dict(await hook.aget_user_kubeconfig())
    except ValueError as e:
        raise AirflowFailException(str(e)) from e


@dataclass(frozen=True)
class ApplyResult:
    action: Literal["created", "patched", "unchanged"]
    object: Json

    @property
    def uid(self) -> str:
        return self.object["metadata"].get("uid", "")

    @property
    def resource_version(self) -> str:
        return self.object["metadata"].get("resourceVersion", "")


class KubeHook(BaseHook):
    """Sync Kubernetes access for workers: get/list/create/patch by REST path and an idempotent :meth:`apply`."""

    hook_name = "Kubernetes (elastic inference)"

    def __init__(self, access: KubeAccess | None = None, *, retry_attempts: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.access = access or KubeAccess()
        self.retry_attempts = retry_attempts

    @cached_property
    def api_client(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        from kubernetes import client

        cfg = client.Configuration()  # never the process-wide default: two clusters may share a worker
        if self.access.uses_ack:
            hook = KubernetesHook(
                conn_id=None,
                kubernetes_conn_id=None,
                config_dict=fetch_ack_kubeconfig(self.access),
                cluster_context=self.access.cluster_context,
                client_configuration=cfg,
            )
        else:
            hook = KubernetesHook(
                conn_id=self.access.kubernetes_conn_id,
                cluster_context=self.access.cluster_context,
                client_configuration=cfg,
            )
        self._cncf_hook = hook
        return hook.get_conn()

    def close(self) -> None:
        if "api_client" in self.__dict__:
            self.api_client.close()
            del self.__dict__["api_client"]

    # -- raw REST -----------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        operation: str = "",
    ) -> Json:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        try:
            for attempt in tenacity.Retrying(**_retrying(self.retry_attempts)):
                with attempt:
                    # Raw response, parsed here: the client's own parsing logs every body at DEBUG, which
                    # would put a Secret's data into the task log.
                    resp = self.api_client.call_api(
                        path,
                        method,
                        query_params=params,
                        header_params=headers,
                        body=body,
                        auth_settings=["BearerToken"],
                        _return_http_data_only=True,
                        _preload_content=False,
                        _request_timeout=60,
                    )
                    data = resp.data
                    return json.loads(data) if data else {}
        except Exception as exc:
            if getattr(exc, "status", None) is None and not is_transient(exc):
                raise
            raise to_api_error(exc, operation or f"{method} {path}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, ref: ResourceRef, namespace: str | None, name: str) -> Json | None:
        try:
            return self.request("GET", ref.object_path(namespace, name), operation=f"get {ref.kind} {name}")
        except KubernetesApiError as e:
            if e.status == 404:
                return None
            raise

    def list(
        self,
        ref: ResourceRef,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Json:
        return self.request(
            "GET",
            ref.collection_path(namespace),
            query={"labelSelector": label_selector, "fieldSelector": field_selector},
            operation=f"list {ref.plural}",
        )

    # -- idempotent writes --------------------------------------------------------------------------------
    def apply(self, obj: Json) -> ApplyResult:
        """Create ``obj`` or bring the existing object to it; write nothing when it already matches.

        get → 404: create (a 409 from a concurrent creator is read back, never retried) → if every field we
        specify already has our value: unchanged → else JSON merge patch (lists are replaced whole, which is
        what a manifest means). Immutable-field changes surface as the API server's 422 message.
        """
        ref = ref_of(obj)
        body = desired_body(obj)
        ns = body["metadata"].get("namespace") if ref.namespaced else None
        name = body["metadata"]["name"]
        what = describe(body)
        current = self.get(ref, ns, name)
        if current is None:
            try:
                created = self.request(
                    "POST",
                    ref.collection_path(ns),
                    body=body,
                    query={"fieldManager": FIELD_MANAGER},
                    operation=f"create {what}",
                )
                self.log.info("Created %s (uid %s)", what, created["metadata"].get("uid"))
                return ApplyResult("created", created)
            except KubernetesApiError as e:
                if e.status == 404 and ns and self.get(ResourceRef("v1", "Namespace"), None, ns) is None:
                    raise KubernetesTerminalError(
                        f"namespace {ns!r} does not exist: create it (kubectl create namespace {ns}) or deploy to"
                        " a namespace that exists",
                        status=404,
                        reason="NotFound",
                        operation=f"create {what}",
                    ) from e
                if e.status == 404:
                    raise KubernetesTerminalError(
                        f"{ref.api_version} {ref.kind} is not served by this cluster ({e}); is the API installed"
                        " (for SeldonDeployment: Seldon Core v1 and its CRD)?",
                        status=404,
                        reason="NotFound",
                        operation=f"create {what}",
                    ) from e
                if e.status != 409:
                    raise
                current = self.get(ref, ns, name)
                if current is None:
                    raise
        if is_subset(body, current):
            self.log.info(
                "%s is up to date (uid %s, resourceVersion %s)",
                what,
                current["metadata"].get("uid"),
                current["metadata"].get("resourceVersion"),
            )
            return ApplyResult("unchanged", current)
        patched = self.request(
            "PATCH",
            ref.object_path(ns, name),
            body=body,
            content_type=MERGE_PATCH,
            query={"fieldManager": FIELD_MANAGER},
            operation=f"patch {what}",
        )
        self.log.info("Patched %s (uid %s)", what, patched["metadata"].get("uid"))
        return ApplyResult("patched", patched)

    def delete(self, ref: ResourceRef, namespace: str | None, name: str) -> bool:
        try:
            self.request("DELETE", ref.object_path(namespace, name), operation=f"delete {ref.kind} {name}")
            return True
        except KubernetesApiError as e:
            if e.status == 404:
                return False
            raise


class KubeAsyncHook(BaseHook):
    """Async Kubernetes access for triggers (kubernetes_asyncio), built like :class:`KubeHook`:
    ``async with hook.client() as api``, then :meth:`request` and :meth:`watch_events`."""

    hook_name = "Kubernetes (elastic inference, async)"

    def __init__(self, access: KubeAccess | None = None, *, retry_attempts: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.access = access or KubeAccess()
        self.retry_attempts = retry_attempts

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio import client as aclient

        cfg = aclient.Configuration()
        if self.access.uses_ack:
            hook = AsyncKubernetesHook(
                config_dict=await afetch_ack_kubeconfig(self.access),
                connection_extras={},
                client_configuration=cfg,
                conn_id=None,
                kubernetes_conn_id=None,
                cluster_context=self.access.cluster_context,
            )
        else:
            hook = AsyncKubernetesHook(
                conn_id=self.access.kubernetes_conn_id,
                client_configuration=cfg,
                cluster_context=self.access.cluster_context,
            )
        async with hook.get_conn() as api:
            yield api

    async def request(
        self, api: Any, method: str, path: str, *, query: dict[str, Any] | None = None, operation: str = ""
    ) -> Json:
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        try:
            async for attempt in tenacity.AsyncRetrying(**_retrying(self.retry_attempts)):
                with attempt:
                    return await api.call_api(
                        path,
                        method,
                        query_params=params,
                        header_params={"Accept": "application/json"},
                        response_types_map={200: "object"},
                        auth_settings=["BearerToken"],
                        _return_http_data_only=True,
                        _request_timeout=60,
                    )
        except Exception as exc:
            if getattr(exc, "status", None) is None and not is_transient(exc):
                raise
            raise to_api_error(exc, operation or f"{method} {path}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def watch_events(self, api: Any, path: str, **params: Any) -> AsyncIterator[tuple[Any, Any]]:
        """``(watch, events)``: a ``kubernetes_asyncio`` Watch over ``path`` (list parameters as keywords:
        ``resource_version``, ``label_selector``, ...) and its stream of raw-dict events; ``watch.resource_version``
        follows the stream."""
        from kubernetes_asyncio import watch

        async with watch.Watch() as w:
            yield w, w.stream(self.watch_function(api, path), **params)

    def watch_function(self, api: Any, path: str) -> Callable[..., Any]:
        """A list function for ``kubernetes_asyncio.watch.Watch().stream``: raw dict events, errors as ApiException.

        Its docstring has no ``:rtype:``, so the Watch leaves objects as dicts (any kind, CRDs included).
        """
        from kubernetes_asyncio.client.exceptions import ApiException

        async def list_raw(
            *,
            watch: bool = False,
            _preload_content: bool = True,
            resource_version: str | None = None,
            timeout_seconds: int | None = None,
            label_selector: str | None = None,
            field_selector: str | None = None,
            allow_watch_bookmarks: bool | None = None,
        ) -> Any:
            params = [
                (k, v)
                for k, v in (
                    ("watch", "true" if watch else None),
                    ("resourceVersion", resource_version),
                    ("timeoutSeconds", timeout_seconds),
                    ("labelSelector", label_selector),
                    ("fieldSelector", field_selector),
                    ("allowWatchBookmarks", "true" if allow_watch_bookmarks else None),
                )
                if v is not None
            ]
            resp = await api.call_api(
                path,
                "GET",
                query_params=params,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=(timeout_seconds or 60) + 10,
            )
            if not 200 <= resp.status <= 299:
                body = await resp.read()
                resp.close()
                raise (
                    ApiException(status=resp.status, reason=resp.reason or "")
                    if not body
                    else _api_exception(resp.status, resp.reason or "", body)
                )
            return resp

        return list_raw


def _api_exception(status: int, reason: str, body: bytes) -> Exception:
    from kubernetes_asyncio.client.exceptions import ApiException

    exc = ApiException(status=status, reason=reason)
    exc.body = body.decode("utf-8", "replace")
    return exc
