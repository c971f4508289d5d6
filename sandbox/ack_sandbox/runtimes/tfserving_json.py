"""TF Serving's REST JSON <-> tensors (``tensorflow_serving/util/json_tensor.cc``, ``g3doc/api_rest.md``).

Request: ``{"signature_name"?, "instances": [...]}`` (row format) or ``{"inputs": ...}`` (columnar).
Row format with one signature input takes each instance as that input's value (or an object keyed by
the input name); with several inputs each instance is an object. Response: ``{"predictions": ...}``
for row requests (a list of objects when there are several outputs) and ``{"outputs": ...}`` for
columnar ones. Pure logic: no TensorFlow import.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ack_sandbox.runtimes.tfserving_model import DEFAULT_SIGNATURE, ServingError, SignatureInfo, numpy_dtype


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", 0)
        raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: Invalid value. at offset: {pos}") from None
    if not isinstance(doc, dict):
        raise ServingError("INVALID_ARGUMENT", "JSON Value: " + _clip(body) + " Is not object")
    return doc


def signature_name(doc: dict[str, Any]) -> str:
    name = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise ServingError("INVALID_ARGUMENT", "'signature_name' key must be a string value.")
    return name or DEFAULT_SIGNATURE


def request_tensors(doc: dict[str, Any], sig: SignatureInfo) -> tuple[str, dict[str, np.ndarray]]:
    """Returns (format, {input key: array}); format is "row" or "columnar"."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise ServingError(
            "INVALID_ARGUMENT", "Not both of 'inputs' or 'instances' keys can be specified; expected one of them"
        )
    if not has_instances and not has_inputs:
        raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
    names = sorted(sig.inputs)
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise ServingError("INVALID_ARGUMENT", "Expecting 'instances' to be an list/array")
        if not instances:
            raise ServingError("INVALID_ARGUMENT", "No values in 'instances' list")
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for i, inst in enumerate(instances):
            if isinstance(inst, dict) and not _is_b64(inst):
                missing = [n for n in names if n not in inst]
                if missing:
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"Failed to process element: {i} of 'instances' list. JSON object: "
                        f"{_clip(json.dumps(inst))} does not have named input: {missing[0]}",
                    )
                for n in names:
                    columns[n].append(inst[n])
            elif len(names) == 1:
                columns[names[0]].append(inst)
            else:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Failed to process element: {i} of 'instances' list. JSON Value: {_clip(json.dumps(inst))} "
                    f"not formatted correctly. Expecting object with {len(names)} named inputs: {names}",
                )
        return "row", {n: _to_array(n, columns[n], sig, row=True) for n in names}
    inputs = doc["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        unknown = [k for k in inputs if k not in sig.inputs]
        if unknown:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input tensor alias not found in signature: {unknown[0]}. "
                f"Inputs expected to be in the set {{{','.join(names)}}}.",
            )
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ServingError("INVALID_ARGUMENT", f"Missing input tensor alias: {missing[0]}")
        return "columnar", {n: _to_array(n, inputs[n], sig, row=False) for n in names}
    if len(names) != 1:
        raise ServingError("INVALID_ARGUMENT", f"Expecting object with {len(names)} named inputs: {names} in 'inputs'")
    return "columnar", {names[0]: _to_array(names[0], inputs, sig, row=False)}


def _to_array(name: str, value: Any, sig: SignatureInfo, *, row: bool) -> np.ndarray:
    spec = sig.inputs[name]
    dtype = numpy_dtype(spec.dtype)
    try:
        arr = np.asarray(value, dtype=dtype)
    except (ValueError, TypeError) as exc:
        where = "'instances' list" if row else "'inputs'"
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Failed to process {where} for input {name}: values must be a dense, uniformly shaped array of "
            f"{spec.dtype} ({exc})",
        ) from None
    if dtype in (np.float32, np.float64, np.float16) and arr.size and not np.all(np.isfinite(arr)):
        bad = next(v for v in arr.ravel() if not math.isfinite(float(v)))
        raise ServingError("INVALID_ARGUMENT", f"Input {name} contains a non-finite value: {bad}")
    if spec.shape is not None and (
        arr.ndim != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, arr.shape))
    ):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Input to {spec.tensor_name} has shape [{','.join(map(str, arr.shape))}] which is incompatible "
            f"with the signature's shape [{','.join(map(str, spec.shape))}] (-1 = any size)",
        )
    return arr


def response_json(fmt: str, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    names = sorted(outputs)
    if fmt == "row":
        if len(names) == 1:
            return {"predictions": _jsonable(outputs[names[0]])}
        batch = {len(outputs[n]) for n in names}
        if len(batch) != 1:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Output tensors have different batch sizes; use the columnar ('inputs') format for this model",
            )
        rows = batch.pop()
        return {"predictions": [{n: _jsonable(outputs[n][i]) for n in names} for i in range(rows)]}
    if len(names) == 1:
        return {"outputs": _jsonable(outputs[names[0]])}
    return {"outputs": {n: _jsonable(outputs[n]) for n in names}}


def _jsonable(arr: np.ndarray) -> Any:
    if arr.dtype.kind in "SO":
        return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b)(arr).tolist()
    return arr.tolist()


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _clip(text: str | bytes, limit: int = 120) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def error_body(message: str) -> str:
    """TF Serving writes ``{ "error": "<CEscaped message>" }`` (http_rest_api_handler.cc FillJsonErrorMsg)."""
    return '{ "error": ' + json.dumps(message) + " }"
