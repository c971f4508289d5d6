"""The prediction REST protocols, written once: the smoke test, the load test's payload and the locustfile use it.

Seldon posts ``{"data": {"ndarray": [[...]]}}`` to ``/api/v1.0/predictions`` and reads ``data.ndarray`` or
``data.tensor`` (seldon-core ``TfServingProxy`` / ``seldon_core.utils`` response shapes); TF Serving posts
``{"instances": [[...]], "signature_name": ...}`` to ``/v1/models/<name>:predict`` and reads ``predictions``
(tensorflow/serving ``g3doc/api_rest.md``).

Standard library only, and no other provider module: the locustfile imports it inside the locust process
(gevent-patched, no Airflow).
"""

from __future__ import annotations

from typing import Any

PROTOCOLS = ("seldon", "tfserving")
PROTOCOL_PATHS = {"seldon": "/api/v1.0/predictions", "tfserving": "/v1/models/{model_name}:predict"}


def _check(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")


def request_path(protocol: str, model_name: str | None = None, path: str | None = None) -> str:
    """The predict path for ``protocol``: Seldon's ``/api/v1.0/predictions`` or TF Serving's ``:predict``."""
    if path:
        return path if path.startswith("/") else "/" + path
    _check(protocol)
    if protocol == "tfserving" and not model_name:
        raise ValueError("model_name is required for protocol 'tfserving' (/v1/models/<model_name>:predict)")
    return PROTOCOL_PATHS[protocol].format(model_name=model_name)


def request_body(protocol: str, images: list[Any], signature_name: str | None = None) -> dict[str, Any]:
    """One predict request for a batch of images (each in the shape the model takes)."""
    _check(protocol)
    if protocol == "seldon":
        return {"data": {"ndarray": images}}
    body: dict[str, Any] = {"instances": images}
    if signature_name:
        body["signature_name"] = signature_name
    return body


def argmax(row: Any) -> int:
    """The class of one prediction row: a class id as is, the first output of a multi-output model, the index of
    the highest score (singleton nesting unwrapped)."""
    if isinstance(row, (int, float)) and not isinstance(row, bool):
        return int(row)  # the model already returns a class id
    if isinstance(row, dict):  # multi-output TF model: the first output
        row = next(iter(row.values()))
    while isinstance(row, list) and len(row) == 1 and isinstance(row[0], list):
        row = row[0]
    if not isinstance(row, list) or not row:
        raise ValueError(f"expected a list of class scores, got {str(row)[:80]}")
    return max(range(len(row)), key=lambda i: float(row[i]))


def prediction_rows(protocol: str, body: dict[str, Any]) -> list[Any]:
    """The per-image rows of a response."""
    _check(protocol)
    if protocol == "tfserving":
        return list(body["predictions"])
    data = body["data"]
    if "ndarray" in data:
        return list(data["ndarray"])
    tensor = data["tensor"]
    shape, values = tensor["shape"], tensor["values"]
    width = shape[-1] if len(shape) > 1 else len(values)
    return [values[i : i + width] for i in range(0, len(values), width)]


def predicted_classes(protocol: str, body: dict[str, Any]) -> list[int]:
    """The predicted class of every image in a response."""
    return [argmax(row) for row in prediction_rows(protocol, body)]


def predicted_class(protocol: str, body: dict[str, Any]) -> int:
    """The predicted class of the first (only) image of a response."""
    rows = prediction_rows(protocol, body)
    if not rows:
        raise ValueError("the response holds no prediction")
    return argmax(rows[0])
