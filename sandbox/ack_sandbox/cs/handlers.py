"""The CS OpenAPI wire: ROA routes (reference §1.3), request parsing, JSON responses, errors.

Every response has a JSON body (the SDK fails to parse an empty one, §1.6) and an ``x-acs-request-id``.
Query booleans arrive as Python ``str(bool)`` ("True"/"False") and list parameters as JSON strings
(``instance_ids='["i-1"]'``, from ``array_to_string_with_specified_style(..., 'json')``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from ack_sandbox.admin import add_fault_routes, require_admin
from ack_sandbox.alibaba_credentials import CredentialStore
from ack_sandbox.context import SandboxContext
from ack_sandbox.cs import responses, signature
from ack_sandbox.cs.errors import CsError, invalid, new_request_id
from ack_sandbox.cs.faults import Faults
from ack_sandbox.cs.models import CsState

log = logging.getLogger("ack_sandbox.cs")

Handler = Callable[[web.Request], Awaitable[dict[str, Any]]]

STATE = web.AppKey("cs_state", CsState)
FAULTS = web.AppKey("cs_faults", Faults)
CREDS = web.AppKey("cs_creds", CredentialStore)
CTX = web.AppKey("cs_ctx", SandboxContext)
NONCES = web.AppKey("cs_nonces", signature.NonceCache)


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("true", "1", "yes")


def _list(value: str | None) -> list[str]:
    if not value:
        return []
    value = value.strip()
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError:
            raise invalid("instance_ids", f"not a JSON list: {value!r}") from None
        return [str(i) for i in items]
    return [v for v in value.split(",") if v]


def _query(request: web.Request) -> dict[str, str]:
    return dict(parse_qsl(request.query_string, keep_blank_values=True))


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise CsError(400, "InvalidParameter", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise CsError(400, "InvalidParameter", "The request body must be a JSON object.")
    return body


def _int_param(q: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise invalid(name, f"must be between {lo} and {hi}, got {value}")
    return value


# ---------------------------------------------------------------------------- operations
async def create_pool(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    pool, task = state.create_pool(await _json_body(request))
    return {"nodepool_id": pool.nodepool_id, "task_id": task.task_id}


async def describe_pools(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    name = _query(request).get("NodepoolName")
    pools = [p for p in state.pools() if not name or p.name == name]
    return {"nodepools": [responses.pool_to_api(state, p, detail=False) for p in pools]}


async def describe_pool(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    return responses.pool_to_api(state, state.pool(request.match_info["nodepool_id"]), detail=True)


async def modify_pool(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    npid = request.match_info["nodepool_id"]
    task = state.modify_pool(npid, await _json_body(request))
    return {"nodepool_id": npid, "task_id": task.task_id}


async def scale_pool(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    body = await _json_body(request)
    if "count" not in body:
        raise invalid("count", "is required: the number of nodes to add")
    task = state.scale_pool(request.match_info["nodepool_id"], body["count"])
    return {"task_id": task.task_id}


async def delete_pool(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    task = state.delete_pool(request.match_info["nodepool_id"], _bool(_query(request).get("force")))
    return {"task_id": task.task_id}


async def remove_pool_nodes(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    q = _query(request)
    task = state.remove_nodes(request.match_info["nodepool_id"], _list(q.get("instance_ids")), _list(q.get("nodes")))
    return {"task_id": task.task_id}


async def describe_cluster(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    return responses.cluster_to_api(state)


async def describe_nodes(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    q = _query(request)
    page_size = _int_param(q, "pageSize", 10, 1, 100)
    page_number = _int_param(q, "pageNumber", 1, 1, 100000)
    pool_id = q.get("nodepool_id") or None
    if pool_id:
        state.pool(pool_id)
    nodes = state.instances(pool_id)
    wanted_state = (q.get("state") or "all").lower()
    if wanted_state != "all":
        nodes = [n for n in nodes if n.state == wanted_state]
    ids = set(_list(q.get("instanceIds")))
    if ids:
        nodes = [n for n in nodes if n.instance_id in ids]
    ips = set(_list(q.get("nodeIps")))
    if ips:
        nodes = [n for n in nodes if n.ip in ips]
    names = set(_list(q.get("nodeNames")))
    if names:
        nodes = [n for n in nodes if n.node_name in names]
    if q.get("nodeLabels"):
        wanted: dict[str, str] = {}
        for pair in q["nodeLabels"].split(","):
            k, _, v = pair.partition("=")
            wanted[k.strip()] = v.strip()
        nodes = [n for n in nodes if all(state.node_spec(n)["labels"].get(k) == v for k, v in wanted.items())]
    start = (page_number - 1) * page_size
    return {
        "nodes": [responses.instance_to_api(n) for n in nodes[start : start + page_size]],
        "page": {"page_number": page_number, "page_size": page_size, "total_count": len(nodes)},
    }


async def user_kubeconfig(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE]
    state.check_cluster(request.match_info["cluster_id"])
    q = _query(request)
    minutes = _int_param(q, "TemporaryDurationMinutes", 3 * 365 * 24 * 60, 15, 3 * 365 * 24 * 60)
    if q.get("TemporaryDurationMinutes") and minutes > 4320:
        raise invalid("TemporaryDurationMinutes", f"must be between 15 and 4320, got {minutes}")
    path = request.app[CTX].state_dir / "kubeconfig"
    try:
        config = path.read_text()  # read at request time: the Kubernetes service may rewrite it
    except FileNotFoundError:
        raise CsError(400, "ErrorClusterState", "The cluster's kubeconfig is not available yet.") from None
    expiration = datetime.now(UTC) + timedelta(minutes=minutes)
    return {"config": config, "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}


async def describe_task(request: web.Request) -> dict[str, Any]:
    return responses.task_to_api(request.app[STATE].task(request.match_info["task_id"]))


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", "/clusters/{cluster_id}/nodepools", "CreateClusterNodePool", create_pool),
    ("GET", "/clusters/{cluster_id}/nodepools", "DescribeClusterNodePools", describe_pools),
    ("GET", "/clusters/{cluster_id}/nodepools/{nodepool_id}", "DescribeClusterNodePoolDetail", describe_pool),
    ("PUT", "/clusters/{cluster_id}/nodepools/{nodepool_id}", "ModifyClusterNodePool", modify_pool),
    ("POST", "/clusters/{cluster_id}/nodepools/{nodepool_id}", "ScaleClusterNodePool", scale_pool),
    ("DELETE", "/clusters/{cluster_id}/nodepools/{nodepool_id}", "DeleteClusterNodepool", delete_pool),
    ("DELETE", "/clusters/{cluster_id}/nodepools/{nodepool_id}/nodes", "RemoveNodePoolNodes", remove_pool_nodes),
    ("GET", "/clusters/{cluster_id}", "DescribeClusterDetail", describe_cluster),
    ("GET", "/clusters/{cluster_id}/nodes", "DescribeClusterNodes", describe_nodes),
    ("GET", "/k8s/{cluster_id}/user_config", "DescribeClusterUserKubeconfig", user_kubeconfig),
    ("GET", "/tasks/{task_id}", "DescribeTaskInfo", describe_task),
]


def _error_response(err: CsError, request_id: str) -> web.Response:
    return web.json_response(
        err.body(request_id), status=err.status, headers={"x-acs-request-id": request_id, **err.headers}
    )


def api_handler(action: str, fn: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap an operation: authenticate, apply injected faults, run, serialise."""

    async def handle(request: web.Request) -> web.Response:
        request_id = new_request_id()
        try:
            body = await request.read()
            signature.verify(
                request.method,
                request.raw_path.split("?", 1)[0],
                request.query_string,
                request.headers,
                body,
                request.app[CREDS],
                request.app[NONCES],
            )
            request.app[FAULTS].check(action)
            result = await fn(request)
        except CsError as err:
            log.info("%s -> %s %s", action, err.status, err.code)
            return _error_response(err, request_id)
        except Exception:
            log.exception("%s failed", action)
            return _error_response(
                CsError(
                    500,
                    "InternalError",
                    "The request processing has failed due to some unknown error, exception or failure.",
                ),
                request_id,
            )
        result.setdefault("request_id", request_id)  # unknown fields are ignored by the SDK models
        return web.json_response(result, headers={"x-acs-request-id": request_id})

    return handle


async def not_found(request: web.Request) -> web.Response:
    request_id = new_request_id()
    return _error_response(
        CsError(
            404,
            "InvalidAction.NotFound",
            f"Specified api is not found, please check your url and method: {request.method} {request.path}",
        ),
        request_id,
    )


# ---------------------------------------------------------------------------- sandbox admin
def _admin_auth(request: web.Request) -> None:
    require_admin(request, request.app[CTX])


async def admin_issue_sts(request: web.Request) -> web.Response:
    """Issue STS credentials (AssumeRole ``Credentials`` shape) that both CS and OSS accept."""
    _admin_auth(request)
    doc = await request.json() if request.can_read_body else {}
    try:
        cred = request.app[CREDS].issue_sts(int(doc.get("duration_seconds", 3600)))
    except ValueError as exc:
        return web.json_response({"message": str(exc)}, status=400)
    return web.json_response({"Credentials": cred.as_assume_role()})


async def admin_reclaim_spot(request: web.Request) -> web.Response:
    """Reclaim a spot instance now (``{"instance_id": ..., "notice_seconds": 0}``); returns the replacement."""
    _admin_auth(request)
    doc = await request.json()
    try:
        replacement = await request.app[STATE].reclaim_spot(doc["instance_id"], doc.get("notice_seconds"))
    except CsError as err:
        return web.json_response(err.body(new_request_id()), status=err.status)
    return web.json_response({"replacement": responses.instance_to_api(replacement) if replacement else None})


def add_routes(app: web.Application) -> None:
    add_fault_routes(app, FAULTS, CTX)
    app.router.add_post("/_sandbox/sts", admin_issue_sts)
    app.router.add_post("/_sandbox/reclaim", admin_reclaim_spot)
    for method, path, action, fn in ROUTES:
        app.router.add_route(method, path, api_handler(action, fn))
    app.router.add_route("*", "/{tail:.*}", not_found)
