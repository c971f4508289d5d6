"""CS models: ``CsState``, the cluster's CS side as one object: state (``state.py``), lifecycle (``lifecycle.py``) and
the shapes the API and the Node sync read (``responses.py``).

Knows nothing of HTTP. ``CsState`` is stored at ``ctx.services["cs"]`` and is also the in-process API
the node-pool autoscaler and the Kubernetes node sync use (same daemon, same event loop):

- ``pools()``, ``pool(id)``, ``pool_by_name(name)``, ``instances(pool_id=None)``, ``instance(id)``
- ``await scale_out(pool_id, n)`` -> running instances (provisioning delay + spot/PAYG mix, ``mix.py``)
- ``await remove_instances(pool_id, ids)``; ``await reclaim_spot(instance_id)``
- ``add_listener(fn)``: ``fn(event, instance)`` with event ``added`` (ECS instance created, not yet a
  node), ``running`` (joined the cluster: create the Node), ``reclaim_notice`` (spot reclaim notice),
  ``removing`` (being drained), ``removed`` (released: delete the Node)
- ``node_spec(instance)``: the labels/taints/capacity/providerID the Node object should carry.

The records (``Instance``, ``NodePool``, ``Task``) and ``DELAYS`` are re-exported from ``state.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ack_sandbox.cs import responses
from ack_sandbox.cs.lifecycle import CsLifecycle
from ack_sandbox.cs.state import DELAYS, KUBERNETES_VERSION, SERVICE_KEY, Instance, NodePool, Task, iso

if TYPE_CHECKING:
    from ack_sandbox.context import SandboxContext


class CsState(CsLifecycle):
    """The single cluster and everything in it. All mutation happens on the daemon's event loop."""

    def node_spec(self, inst: Instance) -> dict[str, Any]:
        """What the Kubernetes Node for ``inst`` carries (labels per reference §7)."""
        return responses.node_spec(self, inst)


def cs_state(ctx: SandboxContext) -> CsState:
    """The CS state of this daemon (created by the CS service at start)."""
    return ctx.services[SERVICE_KEY]


__all__ = ["DELAYS", "KUBERNETES_VERSION", "SERVICE_KEY", "CsState", "Instance", "NodePool", "Task", "cs_state", "iso"]
