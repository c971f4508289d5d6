"""CS lifecycle: the node-pool operations and the stages they move pools, instances and tasks through.

Node-pool lifecycle (stages; terraform-provider-alicloud waits ``initial|scaling`` -> ``active`` and fails
on ``failed|deleting``): create ``initial`` -> ``active`` (or ``failed``); scale ``scaling`` -> ``active``;
modify ``updating`` -> ``active``; remove nodes ``removing`` -> ``active``; delete ``deleting`` -> gone.
Instances: ``initial`` (ECS instance created) -> ``running`` (joined: a Node) -> ``removing`` -> released; a spot
reclaim gives notice first (``DELAYS["reclaim_notice"]``: ECS's 5 minutes). Delays are cloud seconds
(``DELAYS``) compressed by ``ctx.clock``; each operation returns its ``Task`` at once and runs in the background on
the daemon's event loop, so ``resume()`` can finish what was in flight when the daemon stopped.
"""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any

from ack_sandbox.cs import validation
from ack_sandbox.cs.errors import CsError, invalid
from ack_sandbox.cs.mix import NoStockError, plan_scale_out
from ack_sandbox.cs.state import DELAYS, CsStore, Instance, NodePool, Task, iso, new_id


class CsLifecycle(CsStore):
    """The operations of the CS API and of the in-process callers (autoscaler, node sync) over the store."""

    def resume(self) -> None:
        """After a restart: finish what was in flight when the daemon stopped (call on the event loop)."""
        for inst in list(self.instances_by_id.values()):
            if inst.state == "initial":
                self._spawn(self._finish_join([inst], None))
            elif inst.state == "removing":
                self._spawn(self._finish_removal([inst], None))
        for task in self.tasks.values():
            if task.state != "running":
                continue
            pool = self.pools_by_id.get(task.target_id)
            if task.task_type == "nodepool_create" and pool is not None and pool.state == "initial":
                self._spawn(self._run_create(pool, task))
            elif task.task_type == "nodepool_delete" and pool is not None:
                self._spawn(self._run_delete(pool, task))
            else:
                self._finish_task(task, None)
        for pool in self.pools_by_id.values():
            if pool.state in ("scaling", "updating", "removing"):
                pool.state = "active"
        self.save()

    def _begin(self, pool: NodePool, state: str) -> None:
        self._ops[pool.nodepool_id] = self._ops.get(pool.nodepool_id, 0) + 1
        if pool.state not in ("deleting", "initial", "failed"):
            pool.state = state
        pool.updated = self.ctx.clock.now()

    def _end(self, pool: NodePool) -> None:
        left = self._ops.get(pool.nodepool_id, 1) - 1
        self._ops[pool.nodepool_id] = left
        if left <= 0 and pool.state in ("scaling", "updating", "removing"):
            pool.state = "active"
        pool.updated = self.ctx.clock.now()

    def _node_delay(self) -> float:
        return random.uniform(DELAYS["node_min"], DELAYS["node_max"])

    # ------------------------------------------------------------------ node pool operations (API)
    def create_pool(self, body: dict[str, Any]) -> tuple[NodePool, Task]:
        validation.check_create(body, set(self.vswitch_zones()))
        name = body["nodepool_info"]["name"]
        if self.pool_by_name(name) is not None:
            # Real ACK: 400 InvalidParameter.Name "nodepool name X is already exist in cluster C" (ref §1.6).
            raise CsError(
                400, "InvalidParameter.Name", f"nodepool name {name} is already exist in cluster {self.ctx.cluster_id}"
            )
        now = self.ctx.clock.now()
        spec = self._normalised_spec(body)
        if not spec["auto_scaling"]["enable"] and spec["scaling_group"].get("desired_size") is None:
            spec["scaling_group"]["desired_size"] = int(body.get("count") or 0)
        pool = NodePool(
            nodepool_id=new_id("np", 32), spec=spec, created=now, updated=now, scaling_group_id=new_id("asg-", 20)
        )
        pool.conditions = [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Creating",
                "message": "creating the scaling group",
                "last_transition_time": iso(now),
            }
        ]
        self.pools_by_id[pool.nodepool_id] = pool
        task = self._new_task("nodepool_create", pool.nodepool_id, {"name": name})
        self.save()
        self._spawn(self._run_create(pool, task))
        return pool, task

    async def _run_create(self, pool: NodePool, task: Task) -> None:
        await self.ctx.clock.sleep(DELAYS["pool_setup"])
        if pool.nodepool_id not in self.pools_by_id:
            return
        self._stage(task, "create_scaling_group", f"scaling group {pool.scaling_group_id} created")
        want = (
            int(pool.auto_scaling.get("min_instances") or 0)
            if pool.autoscaling_enabled
            else int(pool.scaling_group.get("desired_size") or 0)
        )
        try:
            if want:
                await self._scale(pool, want, task)
        except NoStockError as exc:
            now = iso(self.ctx.clock.now())
            pool.state = "failed"
            pool.conditions = [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": exc.code,
                    "message": exc.message,
                    "last_transition_time": now,
                }
            ]
            self._finish_task(task, (exc.code, exc.message))
            self.save()
            return
        pool.state = "active"
        pool.updated = self.ctx.clock.now()
        pool.conditions = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Active",
                "message": "node pool is active",
                "last_transition_time": iso(pool.updated),
            }
        ]
        self._finish_task(task, None)
        self.save()

    def modify_pool(self, nodepool_id: str, body: dict[str, Any]) -> Task:
        pool = self.pool(nodepool_id)
        if pool.state in ("deleting", "initial"):
            raise CsError(
                400, "ErrorNodePoolState", f"node pool {nodepool_id} is {pool.state}; wait until it is active and retry"
            )
        validation.check_modify(body, pool.spec, set(self.vswitch_zones()))
        new_name = (body.get("nodepool_info") or {}).get("name")
        if new_name and new_name != pool.name and self.pool_by_name(new_name) is not None:
            raise CsError(
                400,
                "InvalidParameter.Name",
                f"nodepool name {new_name} is already exist in cluster {self.ctx.cluster_id}",
            )
        old_desired = pool.scaling_group.get("desired_size")
        for section in (
            "nodepool_info",
            "auto_scaling",
            "scaling_group",
            "kubernetes_config",
            "management",
            "tee_config",
        ):
            patch = body.get(section)
            if isinstance(patch, dict):
                for k, v in patch.items():
                    if v is None or (isinstance(v, list) and not v and k not in ("labels", "taints")):
                        continue  # the SDK's to_map() sends empty lists for unset list fields
                    pool.spec.setdefault(section, {})[k] = copy.deepcopy(v)
        if pool.state == "failed":
            pool.state = "active"
        task = self._new_task("nodepool_update", nodepool_id, {"body": body})
        self._begin(pool, "updating")
        self.save()
        self._spawn(self._run_modify(pool, task, old_desired))
        return task

    async def _run_modify(self, pool: NodePool, task: Task, old_desired: int | None) -> None:
        await self.ctx.clock.sleep(DELAYS["modify"])
        self._stage(task, "update_scaling_group", "scaling group configuration updated")
        error = None
        desired = pool.scaling_group.get("desired_size")
        if not pool.autoscaling_enabled and desired is not None and desired != old_desired:
            live = [i for i in self.instances(pool.nodepool_id) if i.state != "removing"]
            try:
                if desired > len(live):
                    await self._scale(pool, desired - len(live), task)
                elif desired < len(live):
                    await self._remove(pool, [i.instance_id for i in live[desired:]], task, keep_desired=True)
            except NoStockError as exc:
                error = (exc.code, exc.message)
        self._end(pool)
        self._finish_task(task, error)
        self.save()

    def scale_pool(self, nodepool_id: str, count: Any) -> Task:
        """ScaleClusterNodePool: add ``count`` nodes (reference §1.3)."""
        pool = self.pool(nodepool_id)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise invalid("count", f"must be a positive integer (nodes to add), got {count!r}")
        if pool.state in ("deleting", "initial", "failed"):
            raise CsError(
                400, "ErrorNodePoolState", f"node pool {nodepool_id} is {pool.state}; it can be scaled only when active"
            )
        self._check_room(pool, count)
        task = self._new_task("nodepool_scaleout", nodepool_id, {"count": count})
        if not pool.autoscaling_enabled:
            pool.scaling_group["desired_size"] = int(pool.scaling_group.get("desired_size") or 0) + count
        self.save()

        async def run() -> None:
            try:
                await self._scale(pool, count, task)
            except NoStockError as exc:
                self._finish_task(task, (exc.code, exc.message))
            else:
                self._finish_task(task, None)
            self.save()

        self._spawn(run())
        return task

    def _check_room(self, pool: NodePool, count: int) -> None:
        live = sum(1 for i in self.instances(pool.nodepool_id) if i.state != "removing")
        if live + count > pool.max_size:
            raise invalid(
                "count",
                f"the node pool would have {live + count} nodes, more than "
                f"auto_scaling.max_instances ({pool.max_size}); raise max_instances first",
                "InvalidParameter.Count",
            )

    async def _scale(self, pool: NodePool, count: int, task: Task | None) -> list[Instance]:
        existing = [i.placement() for i in self.instances(pool.nodepool_id) if i.state != "removing"]
        plan = plan_scale_out(self._policy(pool), existing, count, self._stock)  # NoStockError propagates
        self._begin(pool, "scaling")
        try:
            created = [self._new_instance(pool, p) for p in plan]
            for inst in created:
                self._emit("added", inst)
            self._stage(
                task,
                "create_instances",
                f"created {len(created)} ECS instances: "
                + ", ".join(f"{i.instance_id}({i.instance_type},{i.spot_strategy})" for i in created),
            )
            self.save()
            await self._finish_join(created, task)
        finally:
            self._end(pool)
        self.save()
        return created

    async def _finish_join(self, created: list[Instance], task: Task | None) -> None:
        await self.ctx.clock.sleep(self._node_delay())
        for inst in created:
            if inst.instance_id in self.instances_by_id and inst.state == "initial":
                inst.state, inst.node_status = "running", "Ready"
                self._emit("running", inst)
                if task is not None:
                    task.task_result.append({"data": inst.instance_id, "status": "success"})
        self._stage(task, "attach_nodes", f"{len(created)} nodes joined the cluster")

    async def scale_out(self, nodepool_id: str, count: int) -> list[Instance]:
        """For the node-pool autoscaler: add ``count`` instances (mix + delay), return them once running.

        Raises ``CsError`` for an unknown pool / a pool not active / over ``max_instances``, and
        ``NoStockError`` when the mix cannot be satisfied (the task records the failure either way).
        """
        pool = self.pool(nodepool_id)
        if pool.state in ("deleting", "initial", "failed"):
            raise CsError(400, "ErrorNodePoolState", f"node pool {nodepool_id} is {pool.state}")
        self._check_room(pool, count)
        task = self._new_task("cluster_scaleout", nodepool_id, {"count": count, "source": "autoscaler"})
        if not pool.autoscaling_enabled:
            pool.scaling_group["desired_size"] = int(pool.scaling_group.get("desired_size") or 0) + count
        try:
            created = await self._scale(pool, count, task)
        except NoStockError as exc:
            self._finish_task(task, (exc.code, exc.message))
            self.save()
            raise
        self._finish_task(task, None)
        self.save()
        return created

    def remove_nodes(self, nodepool_id: str, instance_ids: list[str], node_names: list[str]) -> Task:
        """RemoveNodePoolNodes: drain and release the given instances (by id or node name)."""
        pool = self.pool(nodepool_id)
        by_name = {i.node_name: i.instance_id for i in self.instances(nodepool_id)}
        ids = list(instance_ids) + [by_name.get(n, n) for n in node_names]
        if not ids:
            raise invalid("instance_ids", "give the instance_ids (or nodes) to remove")
        for iid in ids:
            inst = self.instances_by_id.get(iid)
            if inst is None or inst.nodepool_id != nodepool_id:
                raise invalid(
                    "instance_ids", f"{iid} is not a node of node pool {nodepool_id}", "InvalidParameter.InstanceIds"
                )
        task = self._new_task("nodepool_remove_nodes", nodepool_id, {"instance_ids": ids})
        self.save()

        async def run() -> None:
            await self._remove(pool, ids, task)
            self._finish_task(task, None)
            self.save()

        self._spawn(run())
        return task

    async def remove_instances(self, nodepool_id: str, instance_ids: list[str]) -> None:
        """For the node-pool autoscaler: drain and release instances (returns when they are gone)."""
        pool = self.pool(nodepool_id)
        task = self._new_task("cluster_scalein", nodepool_id, {"instance_ids": list(instance_ids)})
        await self._remove(pool, list(instance_ids), task)
        self._finish_task(task, None)
        self.save()

    async def _remove(self, pool: NodePool, ids: list[str], task: Task | None, keep_desired: bool = False) -> None:
        insts = [self.instances_by_id[i] for i in ids if i in self.instances_by_id]
        self._begin(pool, "removing")
        try:
            for inst in insts:
                inst.state = "removing"
                self._emit("removing", inst)
            if not pool.autoscaling_enabled and not keep_desired:
                pool.scaling_group["desired_size"] = max(
                    0, int(pool.scaling_group.get("desired_size") or 0) - len(insts)
                )
            self.save()
            await self._finish_removal(insts, task)
        finally:
            self._end(pool)

    async def _finish_removal(self, insts: list[Instance], task: Task | None) -> None:
        await self.ctx.clock.sleep(DELAYS["remove_node"])
        for inst in insts:
            if self.instances_by_id.pop(inst.instance_id, None) is not None:
                self._emit("removed", inst)
                if task is not None:
                    task.task_result.append({"data": inst.instance_id, "status": "success"})
        self._stage(task, "release_instances", f"released {len(insts)} instances")
        self.save()

    async def reclaim_spot(self, instance_id: str, notice_seconds: float | None = None) -> Instance | None:
        """The spot market reclaims an instance: notice, then release. Returns the replacement, if any.

        With ``scaling_group.spot_instance_remedy`` the pool creates the replacement on notice (ESS
        docstring: the replacement is created before the old instance is released).
        """
        inst = self.instances_by_id.get(instance_id)
        if inst is None:
            raise CsError(404, "InvalidInstanceId.NotFound", f"instance {instance_id} not found")
        if not inst.is_spot:
            raise invalid("instance_id", f"{instance_id} is pay-as-you-go, not a spot instance")
        pool = self.pool(inst.nodepool_id)
        self._emit("reclaim_notice", inst)
        replacement: asyncio.Task[list[Instance]] | None = None
        if pool.scaling_group.get("spot_instance_remedy"):
            replacement = asyncio.get_running_loop().create_task(self._scale(pool, 1, None))
        await self.ctx.clock.sleep(DELAYS["reclaim_notice"] if notice_seconds is None else notice_seconds)
        inst.node_status = "NotReady"
        await self._remove(pool, [instance_id], None, keep_desired=True)
        if replacement is not None:
            try:
                return (await replacement)[0]
            except NoStockError:
                return None
        return None

    def delete_pool(self, nodepool_id: str, force: bool) -> Task:
        pool = self.pool(nodepool_id)
        live = self.instances(nodepool_id)
        if live and not force:
            # [unverified code] ACK refuses to delete a pool that still has nodes unless force=true.
            raise CsError(
                400,
                "ErrorNodePoolHasNodes",
                f"node pool {nodepool_id} still has {len(live)} nodes; remove them first or delete with force=true",
            )
        if pool.state == "deleting":
            raise CsError(400, "ErrorNodePoolState", f"node pool {nodepool_id} is already being deleted")
        pool.state = "deleting"
        pool.updated = self.ctx.clock.now()
        task = self._new_task("nodepool_delete", nodepool_id, {"force": force})
        self.save()
        self._spawn(self._run_delete(pool, task))
        return task

    async def _run_delete(self, pool: NodePool, task: Task) -> None:
        insts = self.instances(pool.nodepool_id)
        for inst in insts:
            inst.state = "removing"
            self._emit("removing", inst)
        await self.ctx.clock.sleep(DELAYS["delete_pool"])
        for inst in insts:
            if self.instances_by_id.pop(inst.instance_id, None) is not None:
                self._emit("removed", inst)
        self.pools_by_id.pop(pool.nodepool_id, None)
        self._finish_task(task, None)
        self.save()
