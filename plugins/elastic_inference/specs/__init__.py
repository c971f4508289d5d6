"""Typed run specs - node pool, model, serving, load test - validated once in ``plan`` and passed whole.

Each has ``from_mapping()`` (the only place rendered template values are coerced, through :func:`coerce`),
``problems()`` (every problem, naming the field and the fix) and ``to_dict()`` (JSON for XCom). The DAG's
Params are generated from them (:func:`elastic_inference.specs.run.param_specs`). The node pool's spec lives in
``elastic_inference.node_pool_spec`` (it also builds the CS request bodies) and is re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from elastic_inference.specs._base import Spec, coerce, spec_field
from elastic_inference.specs.load_test import LoadTestSpec
from elastic_inference.specs.model import ModelSpec
from elastic_inference.specs.serving import ServingSpec

if TYPE_CHECKING:
    from elastic_inference.node_pool_spec import NodePoolSpec

__all__ = ["LoadTestSpec", "ModelSpec", "NodePoolSpec", "ServingSpec", "Spec", "coerce", "spec_field"]


def __getattr__(name: str) -> Any:
    # node_pool_spec imports specs._base: importing it lazily keeps the two free of an import cycle.
    if name == "NodePoolSpec":
        from elastic_inference.node_pool_spec import NodePoolSpec

        return NodePoolSpec
    raise AttributeError(name)
