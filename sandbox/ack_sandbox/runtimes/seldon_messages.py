"""Seldon v1 JSON messages (``seldon_core/utils.py``, ``flask_utils.py``): request parts in, response out.

A SeldonMessage carries one of ``data`` (``ndarray`` | ``tensor`` {shape, values}, optional ``names``),
``jsonData``, ``strData`` or ``binData``, plus ``meta``. The response mirrors the request's data kind
(tensor in -> tensor out) and names 2-D outputs ``t:0..t:n-1``. Microservice errors are HTTP 400 with
``{"status": {"status": 1, "info": msg, "code": -1, "reason": "MICROSERVICE_BAD_DATA"}}``
(``SeldonMicroserviceException.to_dict``). Pure logic; numpy only.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import numpy as np


class SeldonMicroserviceError(Exception):
    """``SeldonMicroserviceException``: status_code 400 unless given, reason MICROSERVICE_BAD_DATA."""

    def __init__(self, message: str, status_code: int = 400, reason: str = "MICROSERVICE_BAD_DATA") -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        return {"status": {"status": 1, "info": self.message, "code": -1, "reason": self.reason}}


def extract_request(message: Any) -> tuple[Any, dict[str, Any], str | None]:
    """(features, meta, data_type) like ``extract_request_parts_json``.

    features: ``np.ndarray`` for ``data``; the raw value for ``jsonData``; str for ``strData``; bytes for
    ``binData``. data_type: "ndarray" | "tensor" | "tftensor" | "jsonData" | "strData" | "binData".
    """
    if not isinstance(message, dict):
        raise SeldonMicroserviceError(f"Invalid request data type: {_clip(message)}")
    meta = message.get("meta") or {}
    if not isinstance(meta, dict):
        raise SeldonMicroserviceError("Invalid request: 'meta' must be an object")
    if "data" in message:
        data = message["data"]
        if not isinstance(data, dict):
            raise SeldonMicroserviceError(f"Invalid request data type: {_clip(message)}")
        if "ndarray" in data:
            try:
                return np.array(data["ndarray"]), meta, "ndarray"
            except ValueError as exc:
                raise SeldonMicroserviceError(f"Invalid ndarray: {exc}") from None
        if "tensor" in data:
            tensor = data["tensor"]
            try:
                values = np.array(tensor["values"])
                shape = [int(d) for d in tensor["shape"]]
                return values.reshape(shape), meta, "tensor"
            except (KeyError, TypeError, ValueError) as exc:
                raise SeldonMicroserviceError(f"Invalid tensor (needs shape and values that match): {exc}") from None
        if "tftensor" in data:
            raise SeldonMicroserviceError("tftensor payloads are not supported over REST by the sandbox")
        raise SeldonMicroserviceError(f"Unknown data type: expected ndarray or tensor in 'data', got {list(data)}")
    if "jsonData" in message:
        return message["jsonData"], meta, "jsonData"
    if "strData" in message:
        return message["strData"], meta, "strData"
    if "binData" in message:
        try:
            return base64.b64decode(message["binData"]), meta, "binData"
        except (ValueError, TypeError) as exc:
            raise SeldonMicroserviceError(f"Invalid binData (expected base64): {exc}") from None
    raise SeldonMicroserviceError(f"Invalid request data type: {_clip(message)}")


def construct_response(
    request_type: str | None,
    request_meta: dict[str, Any],
    result: Any,
    *,
    names: list[str] | None = None,
) -> dict[str, Any]:
    """``construct_response_json``: wrap a model result as the response SeldonMessage."""
    meta: dict[str, Any] = {}
    if "puid" in request_meta:
        meta["puid"] = request_meta["puid"]
    if request_meta.get("tags"):
        meta["tags"] = request_meta["tags"]
    unit, image = os.environ.get("PREDICTIVE_UNIT_ID"), os.environ.get("PREDICTIVE_UNIT_IMAGE")
    if unit and image:
        meta["requestPath"] = {unit: image}
    if isinstance(result, (dict, list)) and not isinstance(result, np.ndarray):
        return {"jsonData": result, "meta": meta}
    if isinstance(result, str):
        return {"strData": result, "meta": meta}
    if isinstance(result, bytes):
        return {"binData": base64.b64encode(result).decode("ascii"), "meta": meta}
    arr = np.asarray(result)
    if names is None:
        n_targets = 1 if arr.ndim <= 1 else arr.shape[1]
        names = [f"t:{i}" for i in range(n_targets)]
    if request_type == "tensor":
        data: dict[str, Any] = {"names": names, "tensor": {"shape": list(arr.shape), "values": arr.ravel().tolist()}}
    else:
        data = {"names": names, "ndarray": arr.tolist()}
    return {"data": data, "meta": meta}


def parse_parameters(raw: str | None) -> dict[str, Any]:
    """``PREDICTIVE_UNIT_PARAMETERS``: a JSON list of ``{name, value, type}`` converted by type.

    Types as ``seldon_core.microservice.parse_parameters``: INT, FLOAT, DOUBLE, STRING, BOOL, JSON.
    """
    import json

    if not raw:
        return {}
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"PREDICTIVE_UNIT_PARAMETERS is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise ValueError("PREDICTIVE_UNIT_PARAMETERS must be a JSON list of {name, value, type}")
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or "name" not in item or "value" not in item:
            raise ValueError(f"PREDICTIVE_UNIT_PARAMETERS entry needs name and value: {item!r}")
        kind = str(item.get("type", "STRING")).upper()
        value = item["value"]
        try:
            if kind == "INT":
                value = int(value)
            elif kind in ("FLOAT", "DOUBLE"):
                value = float(value)
            elif kind == "BOOL":
                value = value if isinstance(value, bool) else str(value).lower() in ("true", "1")
            elif kind == "JSON":
                value = json.loads(value) if isinstance(value, str) else value
            elif kind == "STRING":
                value = str(value)
            else:
                raise ValueError(f"unknown type {kind}")
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"PREDICTIVE_UNIT_PARAMETERS {item['name']}: cannot convert {value!r} to {kind}: {exc}"
            ) from None
        out[str(item["name"])] = value
    return out


def _clip(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
