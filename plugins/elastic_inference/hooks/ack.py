"""ACK (Container Service, OpenAPI 2015-12-15) hook on ``alibabacloud-cs20151215``: node pools, cluster, tasks.

Every call goes through :mod:`elastic_inference.hooks.retry`; responses come back as plain dicts in the
wire's snake_case (``body.to_map()``). :class:`AckAsyncHook` is the triggers' variant: it reads the
connection with ``aget_connection`` and calls the SDK's ``*_async`` methods.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from elastic_inference.hooks import retry
from elastic_inference.hooks.base import AlibabaCloudBaseHook, AlibabaCloudSettings

if TYPE_CHECKING:
    from alibabacloud_cs20151215.client import Client as CsClient

# Timeouts in milliseconds, as the SDK's Config wants them (its defaults: read 10000, connect 5000).
READ_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_MS = 5_000
MAX_NODE_PAGES = 100  # DescribeClusterNodes pages of 100: up to 10 000 nodes before we stop


def build_cs_client(settings: AlibabaCloudSettings) -> CsClient:
    """A CS client for ``settings``; an endpoint override is split into host and protocol (ref. §1.1)."""
    from alibabacloud_cs20151215.client import Client
    from alibabacloud_tea_openapi.utils_models import Config

    cfg = Config(
        credential=settings.credential_client(),
        region_id=settings.region_id,
        read_timeout=READ_TIMEOUT_MS,
        connect_timeout=CONNECT_TIMEOUT_MS,
    )
    if settings.cs_endpoint is not None:
        # The scheme must not go inside ``endpoint``: it would be sent as the Host header.
        cfg.endpoint = settings.cs_endpoint.host
        cfg.protocol = settings.cs_endpoint.scheme
    return Client(cfg)


def _body(response: Any) -> dict[str, Any]:
    body = getattr(response, "body", None)
    return body.to_map() if body is not None else {}


def _cs_models() -> Any:
    from alibabacloud_cs20151215 import models

    return models


class AckHook(AlibabaCloudBaseHook):
    """Talk to the ACK (CS) OpenAPI with the ``alibaba_ack`` connection.

    :param ack_conn_id: the connection (login/password = AccessKey pair; extras, see hooks.base).
    :param cluster_id: default cluster for every call; falls back to the connection's ``extra.cluster_id``.
    """

    def __init__(
        self, ack_conn_id: str = AlibabaCloudBaseHook.default_conn_name, *, cluster_id: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(ack_conn_id, **kwargs)
        self._cluster_id = cluster_id

    # -- plumbing -------------------------------------------------------------------------------------------
    def get_conn(self) -> CsClient:
        return self.client

    @cached_property
    def client(self) -> CsClient:
        return build_cs_client(self.settings)

    def resolve_cluster_id(self, cluster_id: str | None = None, settings: AlibabaCloudSettings | None = None) -> str:
        cid = cluster_id or self._cluster_id or (settings or self.settings).cluster_id
        if not cid:
            raise ValueError(
                f"no ACK cluster id: pass cluster_id or set extra.cluster_id on connection {self.ack_conn_id!r}"
            )
        return cid

    def _call(self, operation: str, fn: Any, *args: Any) -> dict[str, Any]:
        return _body(retry.call(fn, *args, policy=self.retry_policy, operation=operation, logger=self.log))

    # -- node pools -----------------------------------------------------------------------------------------
    def create_node_pool(self, body: dict[str, Any], cluster_id: str | None = None) -> dict[str, Any]:
        """CreateClusterNodePool. ``body`` is the wire body (nodepool_info, scaling_group, ...)."""
        req = _cs_models().CreateClusterNodePoolRequest().from_map(body)
        return self._call(
            "CreateClusterNodePool", self.client.create_cluster_node_pool, self.resolve_cluster_id(cluster_id), req
        )

    def list_node_pools(self, cluster_id: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """DescribeClusterNodePools, optionally filtered by name on the server and again exactly here."""
        req = _cs_models().DescribeClusterNodePoolsRequest(nodepool_name=name)
        body = self._call(
            "DescribeClusterNodePools",
            self.client.describe_cluster_node_pools,
            self.resolve_cluster_id(cluster_id),
            req,
        )
        pools = body.get("nodepools") or []
        if name is not None:
            pools = [p for p in pools if (p.get("nodepool_info") or {}).get("name") == name]
        return pools

    def find_node_pool(self, name: str, cluster_id: str | None = None) -> dict[str, Any] | None:
        """The pool called ``name``, or None. More than one is an error: ensure-by-name would be ambiguous."""
        pools = self.list_node_pools(cluster_id, name=name)
        if len(pools) > 1:
            ids = [p.get("nodepool_info", {}).get("nodepool_id") for p in pools]
            raise ValueError(
                f"cluster has {len(pools)} node pools named {name!r} ({ids}); delete the extras or "
                "rename the requested pool"
            )
        return pools[0] if pools else None

    def describe_node_pool(self, nodepool_id: str, cluster_id: str | None = None) -> dict[str, Any]:
        return self._call(
            "DescribeClusterNodePoolDetail",
            self.client.describe_cluster_node_pool_detail,
            self.resolve_cluster_id(cluster_id),
            nodepool_id,
        )

    def modify_node_pool(self, nodepool_id: str, body: dict[str, Any], cluster_id: str | None = None) -> dict[str, Any]:
        req = _cs_models().ModifyClusterNodePoolRequest().from_map(body)
        return self._call(
            "ModifyClusterNodePool",
            self.client.modify_cluster_node_pool,
            self.resolve_cluster_id(cluster_id),
            nodepool_id,
            req,
        )

    def scale_node_pool(self, nodepool_id: str, count: int, cluster_id: str | None = None) -> dict[str, Any]:
        """ScaleClusterNodePool: add ``count`` nodes."""
        req = _cs_models().ScaleClusterNodePoolRequest(count=count)
        return self._call(
            "ScaleClusterNodePool",
            self.client.scale_cluster_node_pool,
            self.resolve_cluster_id(cluster_id),
            nodepool_id,
            req,
        )

    def delete_node_pool(self, nodepool_id: str, cluster_id: str | None = None, force: bool = False) -> dict[str, Any]:
        req = _cs_models().DeleteClusterNodepoolRequest(force=force)
        return self._call(
            "DeleteClusterNodepool",
            self.client.delete_cluster_nodepool,
            self.resolve_cluster_id(cluster_id),
            nodepool_id,
            req,
        )

    # -- cluster --------------------------------------------------------------------------------------------
    def describe_cluster(self, cluster_id: str | None = None) -> dict[str, Any]:
        return self._call(
            "DescribeClusterDetail", self.client.describe_cluster_detail, self.resolve_cluster_id(cluster_id)
        )

    def list_cluster_nodes(
        self,
        cluster_id: str | None = None,
        nodepool_id: str | None = None,
        state: str | None = None,
        page_size: int = 100,
    ) -> list[dict[str, Any]]:
        """DescribeClusterNodes, every page (bounded by MAX_NODE_PAGES)."""
        cid = self.resolve_cluster_id(cluster_id)
        nodes: list[dict[str, Any]] = []
        for page in range(1, MAX_NODE_PAGES + 1):
            req = _cs_models().DescribeClusterNodesRequest(
                nodepool_id=nodepool_id, state=state, page_size=str(page_size), page_number=str(page)
            )
            body = self._call("DescribeClusterNodes", self.client.describe_cluster_nodes, cid, req)
            batch = body.get("nodes") or []
            nodes.extend(batch)
            total = int((body.get("page") or {}).get("total_count") or 0)
            if not batch or len(nodes) >= total:
                break
        return nodes

    def get_user_kubeconfig(
        self, cluster_id: str | None = None, private_ip: bool = False, temporary_duration_minutes: int | None = None
    ) -> str:
        """DescribeClusterUserKubeconfig: the kubeconfig YAML. It is a credential: never log or XCom it."""
        if temporary_duration_minutes is not None and not 15 <= temporary_duration_minutes <= 4320:
            raise ValueError("temporary_duration_minutes must be between 15 and 4320 (or None for the default)")
        req = _cs_models().DescribeClusterUserKubeconfigRequest(
            private_ip_address=private_ip, temporary_duration_minutes=temporary_duration_minutes
        )
        body = self._call(
            "DescribeClusterUserKubeconfig",
            self.client.describe_cluster_user_kubeconfig,
            self.resolve_cluster_id(cluster_id),
            req,
        )
        config = body.get("config")
        if not config:
            raise ValueError("DescribeClusterUserKubeconfig returned no 'config'")
        return config

    def describe_task(self, task_id: str) -> dict[str, Any]:
        return self._call("DescribeTaskInfo", self.client.describe_task_info, task_id)

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test" button: a signed DescribeClusterDetail proves credentials, endpoint and cluster id."""
        try:
            cluster = self.describe_cluster()
        except Exception as e:  # report, never raise, from the UI's test
            return False, str(e)
        return True, f"Connected: cluster {cluster.get('cluster_id')} ({cluster.get('name')}) is {cluster.get('state')}"


class AckAsyncHook(AckHook):
    """Async CS hook for triggers: connection via ``aget_connection``, SDK ``*_async`` calls, asyncio backoff."""

    async def aclient(self) -> CsClient:
        settings = await self.aget_settings()
        if "client" not in self.__dict__:
            self.__dict__["client"] = build_cs_client(settings)
        return self.__dict__["client"]

    async def _acall(self, operation: str, method: str, *args: Any) -> dict[str, Any]:
        client = await self.aclient()
        settings = await self.aget_settings()
        response = await retry.acall(
            getattr(client, method), *args, policy=settings.retry, operation=operation, logger=self.log
        )
        return _body(response)

    async def _acluster(self, cluster_id: str | None) -> str:
        return self.resolve_cluster_id(cluster_id, await self.aget_settings())

    async def adescribe_node_pool(self, nodepool_id: str, cluster_id: str | None = None) -> dict[str, Any]:
        return await self._acall(
            "DescribeClusterNodePoolDetail",
            "describe_cluster_node_pool_detail_async",
            await self._acluster(cluster_id),
            nodepool_id,
        )

    async def alist_node_pools(self, cluster_id: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        req = _cs_models().DescribeClusterNodePoolsRequest(nodepool_name=name)
        body = await self._acall(
            "DescribeClusterNodePools", "describe_cluster_node_pools_async", await self._acluster(cluster_id), req
        )
        pools = body.get("nodepools") or []
        if name is not None:
            pools = [p for p in pools if (p.get("nodepool_info") or {}).get("name") == name]
        return pools

    async def aget_user_kubeconfig(self, cluster_id: str | None = None, private_ip: bool = False) -> str:
        """DescribeClusterUserKubeconfig from a trigger. A credential: never log or XCom it."""
        req = _cs_models().DescribeClusterUserKubeconfigRequest(private_ip_address=private_ip)
        body = await self._acall(
            "DescribeClusterUserKubeconfig",
            "describe_cluster_user_kubeconfig_async",
            await self._acluster(cluster_id),
            req,
        )
        if not body.get("config"):
            raise ValueError("DescribeClusterUserKubeconfig returned no 'config'")
        return body["config"]

    async def adescribe_task(self, task_id: str) -> dict[str, Any]:
        return await self._acall("DescribeTaskInfo", "describe_task_info_async", task_id)

    async def adescribe_cluster(self, cluster_id: str | None = None) -> dict[str, Any]:
        return await self._acall(
            "DescribeClusterDetail", "describe_cluster_detail_async", await self._acluster(cluster_id)
        )

    async def alist_cluster_nodes(
        self, cluster_id: str | None = None, nodepool_id: str | None = None, page_size: int = 100
    ) -> list[dict[str, Any]]:
        cid = await self._acluster(cluster_id)
        nodes: list[dict[str, Any]] = []
        for page in range(1, MAX_NODE_PAGES + 1):
            req = _cs_models().DescribeClusterNodesRequest(
                nodepool_id=nodepool_id, page_size=str(page_size), page_number=str(page)
            )
            body = await self._acall("DescribeClusterNodes", "describe_cluster_nodes_async", cid, req)
            batch = body.get("nodes") or []
            nodes.extend(batch)
            if not batch or len(nodes) >= int((body.get("page") or {}).get("total_count") or 0):
                break
        return nodes
