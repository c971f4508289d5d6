"""Serving backends behind one small interface (:class:`~elastic_inference.serving.base.ServingBackend`).

Operators, the rollout, the load test and the verification ask the backend, never ``if backend == ...``: which
template renders the object, which kind it is, when it is ready (or failed for good), which Service and port the
Ingress routes to, which pods and HPA serve it, what teardown deletes and how to read the model version each
replica serves. A new backend is one adapter module plus one manifest template, registered in :data:`BACKENDS`.
"""

from __future__ import annotations

from elastic_inference.serving.base import ServedVersion, ServingBackend, ServingNames, get_backend

__all__ = ["ServedVersion", "ServingBackend", "ServingNames", "get_backend"]
