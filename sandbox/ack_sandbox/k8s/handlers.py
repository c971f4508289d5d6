"""The HTTP wire of the Kubernetes API: URL routing, verbs, content types, Tables, watch streams, Status errors.

Paths follow k8s.io/apiserver/pkg/endpoints/request/requestinfo.go: ``/api/v1/...`` and
``/apis/<group>/<version>/...``, ``[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]``, and the legacy
``.../watch/...`` prefix.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from ack_sandbox.k8s import auth, convert, discovery, errors, meta, protobuf, reviews
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.kinds import ResourceType
from ack_sandbox.k8s.store import Store, _dumps

log = logging.getLogger(__name__)
JSON = "application/json"
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}
WATCH_DEFAULT_TIMEOUT = 1800
STREAM_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
# Kinds whose DELETE answers with the deleted object instead of a Status (``ReturnDeletedObject: true`` in their
# genericregistry.Store: pkg/registry/core/{pod,service,serviceaccount,persistentvolume,persistentvolumeclaim,
# namespace}/storage).
RETURNS_DELETED_OBJECT = frozenset(
    {
        ("", "pods"),
        ("", "services"),
        ("", "serviceaccounts"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "namespaces"),
    }
)
BOOKMARK_EVERY = 60.0


@dataclass
class Req:
    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None
    watch: bool


class Api:
    def __init__(
        self,
        store: Store,
        authn: auth.Authenticator,
        aggregated: dict[str, discovery.AggregatedGroup],
        log_source: dict[str, Any],
        server_address: str,
    ) -> None:
        self.store = store
        self.authn = authn
        self.aggregated = aggregated
        self.log_source = log_source
        self.server_address = server_address

    # ---- entry -----------------------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _status(exc)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # the real server answers 500 InternalError with the cause
            log.exception("internal error on %s %s", request.method, request.path)
            return _status(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        user = self.authn.authenticate(request.headers.get("Authorization"))
        request["user"] = user
        if path == "/version":
            return _json(discovery.VERSION)
        if path == "/api":
            return _json(discovery.api_versions(self.server_address))
        if path == "/apis":
            return _json(discovery.api_group_list(self.store.registry, self.aggregated))
        parts = path.strip("/").split("/")
        if parts[0] == "openapi":
            return self._openapi(request, parts)
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                doc = discovery.api_group(self.store.registry, self.aggregated, parts[1])
                if doc is None:
                    raise errors.page_not_found()
                return _json(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.page_not_found()
        agg = self.aggregated.get(f"{group}/{version}")
        if agg is not None:
            return await agg.handler(request, rest)
        if not rest:
            doc = discovery.resource_list(self.store.registry, group, version)
            if doc is None:
                raise errors.page_not_found()
            return _json(doc)
        req = self._parse(group, version, rest, _bool(request.query.get("watch")))
        return await self._serve(request, user, req)

    def _openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        from ack_sandbox.k8s import openapi

        crds = {
            (o["spec"]["group"], o["spec"]["names"]["plural"]): o
            for o in self.store._objs.get(("apiextensions.k8s.io", "customresourcedefinitions"), {}).values()
        }
        if parts[1:] == ["v3"]:
            return _json(openapi.root(self.store.registry, crds))
        if parts[1:] == ["v2"]:
            from ack_sandbox.k8s import openapi_v2

            if any(t in request.headers.get("Accept", "") for t in openapi_v2.ACCEPT_PROTOBUF):
                return web.Response(body=openapi_v2.encoded(self.store.registry), content_type=openapi_v2.PROTOBUF)
            return _json(openapi_v2.document(self.store.registry))
        if len(parts) >= 4 and parts[1] == "v3":
            if parts[2] == "api" and len(parts) == 4:
                hit = openapi.cached(self.store.registry, "", parts[3], crds)
            elif parts[2] == "apis" and len(parts) == 5:
                hit = openapi.cached(self.store.registry, parts[3], parts[4], crds)
            else:
                hit = None
            if hit is not None:
                return _json(hit[0])
        raise errors.page_not_found()

    def _parse(self, group: str, version: str, rest: list[str], watch: bool) -> Req:
        reg = self.store.registry
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
            if not rest:
                raise errors.page_not_found()
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            cand = reg.get(group, version, rest[2])
            if cand is not None and cand.namespaced:
                namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.page_not_found()
        rt = reg.get(group, version, rest[0])
        if rt is None:
            raise errors.page_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rt.subresources:
            raise errors.page_not_found()
        if rt.namespaced and namespace is None and name is not None:
            raise errors.page_not_found()
        return Req(rt, namespace, name, sub, watch)

    async def _serve(self, request: web.Request, user: auth.User, r: Req) -> web.StreamResponse:
        m = request.method
        if m == "GET":
            verb = "watch" if r.watch else ("get" if r.name else "list")
        else:
            verb = {
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete" if r.name else "deletecollection",
            }.get(m, "")
        if r.sub in STREAM_SUBRESOURCES:
            # exec/attach/portforward: authorized as "create" on the subresource (kubectl uses GET + upgrade)
            auth.authorize(user, "create", r.rt.group, r.rt.plural, r.namespace, r.name, r.sub)
            return await self._stream(request, r)
        if not verb or (verb == "create" and r.name):
            raise errors.method_not_supported(r.rt.group, r.rt.plural, m.lower())
        authz_ns = r.name if r.rt.gr == ("", "namespaces") and r.name else r.namespace
        if r.rt.gr not in reviews.REVIEWS:  # every authenticated user may review itself (system:basic-user)
            auth.authorize(user, verb, r.rt.group, r.rt.plural, authz_ns, r.name, r.sub)
        if verb not in r.rt.verbs and not r.sub:
            raise errors.method_not_supported(r.rt.group, r.rt.plural, verb)
        q = request.query
        dry = q.get("dryRun") == "All"
        if "dryRun" in q and q.get("dryRun") not in ("All", ""):
            raise errors.invalid(
                "meta.k8s.io",
                "CreateOptions",
                "",
                [
                    (
                        "FieldValueNotSupported",
                        "dryRun",
                        f'Unsupported value: "{q.get("dryRun")}": supported values: "All"',
                    )
                ],
            )
        manager = q.get("fieldManager") or _manager_from_agent(request.headers.get("User-Agent", ""))
        if r.sub == "log":
            return await self._log(request, r)
        if r.sub == "scale":
            return await self._scale(request, r, verb, manager, dry)
        store = self.store
        if verb == "watch":
            return await self._watch(request, r)
        if verb == "list":
            return self._list(request, r)
        if verb == "get":
            obj = store.get_raw(r.rt, r.name or "", r.namespace)
            return self._object(request, r.rt, obj)
        if verb == "create" and r.rt.gr in reviews.REVIEWS:
            body = await _body(request, gvk=_gvk(r.rt))
            _check_kind(r.rt, body)
            return _json(
                reviews.answer(r.rt.group, r.rt.plural, body, user, store.timestamp(), self._cluster_scoped), 201
            )
        if verb == "create":
            body = await _body(request, gvk=_gvk(r.rt))
            _check_kind(r.rt, body)
            obj = store.create_raw(r.rt, body, r.namespace, dry_run=dry, field_manager=manager)
            return self._object(request, r.rt, obj, status=201)
        if verb == "update":
            body = await _body(request, gvk=_gvk(r.rt))
            _check_kind(r.rt, body)
            obj = store.update_raw(
                r.rt, body, r.name or "", r.namespace, subresource=r.sub, dry_run=dry, field_manager=manager
            )
            return self._object(request, r.rt, obj)
        if verb == "patch":
            ctype = request.content_type
            ptype = PATCH_TYPES.get(ctype)
            if ptype is None:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - "
                    "accepted media types include: application/json-patch+json, "
                    "application/merge-patch+json, application/apply-patch+yaml",
                )
            body = await _body(request, yaml_ok=ptype == "apply")
            existed = ptype != "apply" or _exists(store, r)
            obj = store.patch_raw(
                r.rt,
                r.name or "",
                r.namespace,
                body,
                ptype,
                subresource=r.sub,
                field_manager=q.get("fieldManager") or (None if ptype == "apply" else manager),
                force=_bool(q.get("force")),
                dry_run=dry,
            )
            return self._object(request, r.rt, obj, status=200 if existed else 201)
        if verb == "delete":
            opts = await _delete_options(request)
            if (
                r.rt.gr == ("batch", "jobs")
                and not opts.get("propagationPolicy")
                and opts.get("orphanDependents") is None
                and "orphanDependents" not in request.query
            ):
                # batch/v1 Jobs orphan their pods by default (jobStrategy.DefaultGarbageCollectionPolicy,
                # pkg/registry/batch/job/strategy.go); kubectl sends Background explicitly.
                opts["propagationPolicy"] = "Orphan"
            obj, removed = store.delete_raw(
                r.rt,
                r.name or "",
                r.namespace,
                propagation_policy=opts.get("propagationPolicy"),
                grace_period_seconds=opts.get("gracePeriodSeconds"),
                preconditions=opts.get("preconditions"),
                dry_run=dry or opts.get("dryRun") == ["All"],
            )
            if removed and r.rt.gr not in RETURNS_DELETED_OBJECT and not r.rt.crd:
                md = obj["metadata"]
                details = {"name": md["name"], "kind": r.rt.plural, "uid": md["uid"]}
                if r.rt.group:
                    details["group"] = r.rt.group
                return _json(
                    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
                )
            return self._object(request, r.rt, obj, status=200 if removed else 202)
        if verb == "deletecollection":
            opts = await _delete_options(request)
            items, rv, _, _ = store.list_raw(r.rt, r.namespace, q.get("labelSelector"), q.get("fieldSelector"))
            out = []
            for obj, _ in items:
                md = obj["metadata"]
                try:
                    out.append(
                        store.delete_raw(
                            r.rt,
                            md["name"],
                            md.get("namespace"),
                            dry_run=dry,
                            propagation_policy=opts.get("propagationPolicy"),
                            grace_period_seconds=opts.get("gracePeriodSeconds"),
                        )[0]
                    )
                except ApiError as exc:
                    if exc.code != 404:
                        raise
            return _json(
                {
                    "kind": r.rt.kind + "List",
                    "apiVersion": r.rt.api_version,
                    "metadata": {"resourceVersion": str(store.rv)},
                    "items": [convert.to_view(r.rt, o) for o in out],
                }
            )
        raise errors.method_not_supported(r.rt.group, r.rt.plural, verb)

    # ---- reads -----------------------------------------------------------------------------------------

    def _object(self, request: web.Request, rt: ResourceType, obj: dict[str, Any], status: int = 200) -> web.Response:
        if _wants_table(request):
            return _json(self._table(rt, [obj], str(obj["metadata"].get("resourceVersion", "")), request), status)
        return _json(convert.to_view(rt, obj), status)

    def _list(self, request: web.Request, r: Req) -> web.Response:
        q = request.query
        limit = _int(q.get("limit"), "limit")
        items, rv, token, remaining = self.store.list_raw(
            r.rt, r.namespace, q.get("labelSelector"), q.get("fieldSelector"), limit or None, q.get("continue")
        )
        if _wants_table(request):
            table = self._table(r.rt, [o for o, _ in items], str(rv), request)
            if token:
                table["metadata"]["continue"] = token
            return _json(table)
        md: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            md["continue"] = token
            if remaining:
                md["remainingItemCount"] = remaining
        srt = self.store.registry.storage_type(r.rt.storage_gr)
        if r.rt.storage is None and (srt is None or srt.version == r.rt.version):
            raw_items = b",".join(raw for _, raw in items)
        else:
            raw_items = b",".join(_dumps(convert.to_view(r.rt, o)) for o, _ in items)
        head = _dumps({"kind": r.rt.kind + "List", "apiVersion": r.rt.api_version, "metadata": md})
        body = head[:-1] + b',"items":[' + raw_items + b"]}"
        return web.Response(body=body, content_type=JSON)

    def _table(self, rt: ResourceType, objs: list[dict[str, Any]], rv: str, request: web.Request) -> dict[str, Any]:
        cols, row_fn = rt.table
        include = request.query.get("includeObject", "Metadata")
        now = self.store.now()
        rows = []
        for o in objs:
            view = convert.to_view(rt, o) if rt.storage is None else o
            row: dict[str, Any] = {"cells": row_fn(o, now)}
            if include == "Object":
                row["object"] = view
            elif include != "None":
                row["object"] = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                }
            rows.append(row)
        from ack_sandbox.k8s.tables import column_definitions

        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": column_definitions(cols),
            "rows": rows,
        }

    async def _watch(self, request: web.Request, r: Req) -> web.StreamResponse:
        q = request.query
        rv = q.get("resourceVersion")
        field_selector = q.get("fieldSelector")
        if r.name:  # watch on a single object: a field selector on its name
            field_selector = ",".join(x for x in (field_selector, f"metadata.name={r.name}") if x)
        timeout = _int(q.get("timeoutSeconds"), "timeoutSeconds") or WATCH_DEFAULT_TIMEOUT
        bookmarks = _bool(q.get("allowWatchBookmarks"))
        initial = _bool(q.get("sendInitialEvents"))
        table = _wants_table(request)
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        try:
            w = self.store.watch(
                r.rt, r.namespace, None if initial else rv, q.get("labelSelector"), field_selector, copy=False
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            # Too old: the real server answers 200 and sends one ERROR event with the 410 Status.
            await resp.prepare(request)
            await resp.write(_dumps({"type": "ERROR", "object": exc.status()}) + b"\n")
            await resp.write_eof()
            return resp
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_rv = rv or str(self.store.rv)
        try:
            if initial:
                pending = w.queue.qsize()
                for _ in range(pending):
                    item = w.queue.get_nowait()
                    if item is None:
                        break
                    await resp.write(self._event_line(r.rt, item, table, request))
                await resp.write(
                    _dumps({"type": "BOOKMARK", "object": self._bookmark(r.rt, str(self.store.rv), initial_end=True)})
                    + b"\n"
                )
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(w.next_raw(), min(left, BOOKMARK_EVERY))
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        await resp.write(
                            _dumps({"type": "BOOKMARK", "object": self._bookmark(r.rt, str(self.store.rv))}) + b"\n"
                        )
                    continue
                if item is None:
                    break
                last_rv = item[1]["metadata"].get("resourceVersion", last_rv)
                await resp.write(self._event_line(r.rt, item, table, request))
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            w.close()
        try:
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        return resp

    def _event_line(
        self, rt: ResourceType, item: tuple[str, dict[str, Any], bytes | None], table: bool, request: web.Request
    ) -> bytes:
        etype, obj, raw = item
        if table:
            body = _dumps(self._table(rt, [obj], obj["metadata"].get("resourceVersion", ""), request))
        elif rt.storage is None and raw is not None and obj.get("apiVersion") == rt.api_version:
            body = raw
        else:
            body = _dumps(convert.to_view(rt, obj))
        return b'{"type":"' + etype.encode() + b'","object":' + body + b"}\n"

    @staticmethod
    def _bookmark(rt: ResourceType, rv: str, initial_end: bool = False) -> dict[str, Any]:
        md: dict[str, Any] = {"resourceVersion": rv, "creationTimestamp": None}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": md}

    def _cluster_scoped(self, group: str, resource: str) -> bool:
        rt = self.store.registry.preferred(group, resource.split("/", 1)[0])
        return rt is not None and not rt.namespaced

    # ---- subresources ----------------------------------------------------------------------------------

    async def _scale(self, request: web.Request, r: Req, verb: str, manager: str, dry: bool) -> web.Response:
        store, rt = self.store, r.rt
        obj = store.get_raw(rt, r.name or "", r.namespace)
        if verb == "get":
            return _json(_to_scale(rt, obj))
        if verb == "update":
            scale = await _body(request, gvk=("autoscaling/v1", "Scale"))
        elif verb == "patch":
            ptype = PATCH_TYPES.get(request.content_type)
            if ptype not in ("merge", "strategic", "json"):
                raise errors.unsupported_media_type(request.content_type)
            from ack_sandbox.k8s import patch as p

            current = _to_scale(rt, obj)
            body = await _body(request)
            scale = (
                p.apply_json_patch(current, body)
                if ptype == "json"
                else p.strategic_merge(current, body)
                if ptype == "strategic"
                else p.json_merge(current, body)
            )
            scale.get("metadata", {}).pop("resourceVersion", None)
        else:
            raise errors.method_not_supported(rt.group, rt.plural, verb)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "autoscaling",
                "Scale",
                r.name or "",
                [
                    (
                        "FieldValueInvalid",
                        "spec.replicas",
                        f"Invalid value: {replicas}: must be greater than or equal to 0",
                    )
                ],
            )
        new = json.loads(json.dumps(obj))
        _set_path(new, rt.scale.spec_replicas if rt.scale else ".spec.replicas", replicas)
        want = (scale.get("metadata") or {}).get("resourceVersion")
        if want:
            new["metadata"]["resourceVersion"] = want
        else:
            new["metadata"].pop("resourceVersion", None)
        out = store.update_raw(rt, new, r.name or "", r.namespace, dry_run=dry, field_manager=manager)
        return _json(_to_scale(rt, out))

    async def _stream(self, request: web.Request, r: Req) -> web.StreamResponse:
        pod = self.store.get_raw(r.rt, r.name or "", r.namespace)
        handler = self.log_source.get("stream")
        if handler is None:
            raise errors.bad_request(f"unable to upgrade connection: pod {r.name} has no running kubelet")
        return await handler(request, pod, r.sub)

    async def _log(self, request: web.Request, r: Req) -> web.StreamResponse:
        pod = self.store.get_raw(r.rt, r.name or "", r.namespace)
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {r.name}, choose one of: [{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {r.name}")
        source = self.log_source.get("fn")
        if source is None:
            statuses = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or []}
            state = (statuses.get(container) or {}).get("state") or {}
            if "running" not in state and "terminated" not in state:
                reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
                raise errors.bad_request(f'container "{container}" in pod "{r.name}" is waiting to start: {reason}')
            return web.Response(body=b"", content_type="text/plain")
        result = await source(pod, container, dict(request.query))
        if isinstance(result, (bytes, str)):
            return web.Response(
                body=result if isinstance(result, bytes) else result.encode(), content_type="text/plain"
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            async for chunk in result:
                await resp.write(chunk)
        except (ConnectionResetError, ConnectionError):
            pass
        return resp


# ---- helpers -------------------------------------------------------------------------------------------------


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type=JSON)


def _status(exc: ApiError) -> web.Response:
    return _json(exc.status(), exc.code)


def _bool(v: str | None) -> bool:
    """Go's strconv.ParseBool, as the apiserver decodes boolean query parameters (the Python client sends "True")."""
    return v in ("1", "t", "T", "true", "TRUE", "True")


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _int(v: str | None, name: str) -> int | None:
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError as exc:
        raise errors.bad_request(f"invalid value for {name}: {v!r}") from exc


def _manager_from_agent(agent: str) -> str:
    """Default fieldManager: the User-Agent up to the first '/' (apiserver's prefixFromUserAgent)."""
    return (agent.split("/", 1)[0] or "unknown")[:128]


async def _body(request: web.Request, yaml_ok: bool = True, gvk: tuple[str, str] | None = None) -> Any:
    """The request's object as JSON; ``gvk`` (apiVersion, kind) of a built-in kind lets a protobuf body in."""
    if request.content_type == protobuf.MEDIA_TYPE and gvk is not None:
        # Built-in kinds: decoded with the Kubernetes descriptors into the JSON form (k8s/protobuf.py).
        return protobuf.decode(await request.read(), *gvk)
    if request.content_type.startswith("application/vnd.kubernetes.protobuf") or request.content_type.startswith(
        "application/cbor"
    ):
        # Custom resources take JSON and YAML only, as the apiextensions-apiserver does; CBOR is not decoded.
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted "
            "media types include: application/json, application/yaml",
        )
    raw = await request.read()
    if not raw:
        raise errors.bad_request("the body of the request was empty")
    try:
        return json.loads(raw)
    except ValueError:
        if not yaml_ok and request.content_type not in ("application/yaml",):
            raise errors.bad_request("the body of the request was not valid JSON") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise errors.bad_request(f"error decoding YAML: {exc}") from exc


async def _delete_options(request: web.Request) -> dict[str, Any]:
    q = request.query
    opts: dict[str, Any] = {}
    if request.can_read_body:
        raw = await request.read()
        if raw.strip() and request.content_type == protobuf.MEDIA_TYPE:
            opts = protobuf.decode(raw, "v1", "DeleteOptions")
        elif raw.strip():
            try:
                opts = json.loads(raw)
            except ValueError as exc:
                raise errors.bad_request(f"invalid DeleteOptions: {exc}") from exc
    if q.get("propagationPolicy"):
        opts["propagationPolicy"] = q["propagationPolicy"]
    if q.get("gracePeriodSeconds"):
        opts["gracePeriodSeconds"] = _int(q["gracePeriodSeconds"], "gracePeriodSeconds")
    if opts.get("orphanDependents") is True or _bool(q.get("orphanDependents")):
        opts.setdefault("propagationPolicy", "Orphan")
    return opts


def _gvk(rt: ResourceType) -> tuple[str, str] | None:
    """The (apiVersion, kind) a protobuf body may be decoded as: built-in kinds only (CRs are JSON/YAML only)."""
    return None if rt.crd else (rt.api_version, rt.kind)


def _check_kind(rt: ResourceType, body: Any) -> None:
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be an object")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version and api_version != rt.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
        )
    if kind and kind != rt.kind:
        raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
    body.setdefault("apiVersion", rt.api_version)
    body.setdefault("kind", rt.kind)


def _exists(store: Store, r: Req) -> bool:
    try:
        store.get_raw(r.rt, r.name or "", r.namespace)
        return True
    except ApiError:
        return False


def _get_path(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.lstrip(".").split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.lstrip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def _to_scale(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    paths = rt.scale
    md = obj["metadata"]
    if paths and paths.label_selector:
        selector = _get_path(obj, paths.label_selector) or ""
    else:
        sel = (obj.get("spec") or {}).get("selector")
        if rt.kind == "ReplicationController":  # a plain label map
            sel = {"matchLabels": sel or {}}
        selector = meta.label_selector_string(sel)
    status: dict[str, Any] = {"replicas": _get_path(obj, paths.status_replicas if paths else ".status.replicas") or 0}
    if selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
        "spec": {"replicas": _get_path(obj, paths.spec_replicas if paths else ".spec.replicas") or 0},
        "status": status,
    }


@web.middleware
async def protobuf_responses(request: web.Request, handler: Any) -> web.StreamResponse:
    """A client whose Accept takes protobuf alone gets its JSON answer re-encoded (``protobuf.encode``); what the
    1.20 descriptors cannot carry (a newer field, a Table) and watch streams (not framed in protobuf here) get
    the apiserver's 406 (``negotiation.NewNotAcceptableError``)."""
    if not protobuf.wants_protobuf_only(request.headers.get("Accept", "")):
        return await handler(request)
    if _bool(request.query.get("watch")) or "/watch/" in request.path:
        return _not_acceptable()
    resp = await handler(request)
    if not (isinstance(resp, web.Response) and resp.content_type == JSON and isinstance(resp.body, bytes)):
        return resp
    try:
        body = protobuf.encode(json.loads(resp.body))
    except (protobuf.NotEncodable, ValueError, TypeError, KeyError) as exc:
        log.debug("protobuf answer refused: %s", exc)
        return _not_acceptable()
    return web.Response(body=body, status=resp.status, content_type=protobuf.MEDIA_TYPE)


def _not_acceptable() -> web.Response:
    return _status(
        ApiError(
            406, "NotAcceptable", "only the following media types are accepted: application/json, application/yaml"
        )
    )
