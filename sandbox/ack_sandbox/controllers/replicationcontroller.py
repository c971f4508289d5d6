"""The ReplicationController controller: the ReplicaSet controller over core/v1 ReplicationControllers, whose
``spec.selector`` is a plain label map (pkg/controller/replication wraps the ReplicaSet controller the same way)."""

from __future__ import annotations

from typing import Any

from ack_sandbox.controllers.base import PODS, REPLICATIONCONTROLLERS, Obj
from ack_sandbox.controllers.replicaset import ReplicaSetController
from ack_sandbox.k8s.meta import selector_from_label_selector


class ReplicationControllerController(ReplicaSetController):
    name = "replication-controller"
    primary = REPLICATIONCONTROLLERS
    watches = (PODS,)

    def selector(self, rc: Obj) -> Any:
        return selector_from_label_selector({"matchLabels": rc["spec"].get("selector") or {}})
