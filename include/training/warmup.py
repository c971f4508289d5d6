"""TF Serving warmup requests written into the exported SavedModel.

TensorFlow Serving replays ``<version>/assets.extra/tf_serving_warmup_requests`` (a TFRecord file of
``tensorflow.serving.PredictionLog`` messages) before it reports the version AVAILABLE, so the first real
requests do not pay the runtime's lazy initialisation ("SavedModel Warmup" in the TF Serving guide). The
messages are encoded here on the protobuf wire directly (field numbers of
``tensorflow_serving/apis/{prediction_log,predict,model}.proto``): the ``tensorflow-serving-api`` wheel
would pull in a second TensorFlow next to ``tensorflow-cpu``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes, embedded messages, map entries."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(model_name: str, signature_name: str, inputs: dict[str, np.ndarray]) -> bytes:
    """One serialized PredictionLog{predict_log: PredictLog{request: PredictRequest{...}}}."""
    import tensorflow as tf

    model_spec = _field(1, model_name.encode()) + _field(3, signature_name.encode())  # ModelSpec.name, .signature_name
    request = _field(1, model_spec)  # PredictRequest.model_spec
    for key, value in inputs.items():  # PredictRequest.inputs: map<string, TensorProto> entries
        tensor = tf.make_tensor_proto(value).SerializeToString()
        request += _field(2, _field(1, key.encode()) + _field(2, tensor))
    return _field(6, _field(1, request))  # PredictionLog.predict_log -> PredictLog.request


def write_warmup_requests(
    version_dir: str | Path,
    model_name: str,
    input_name: str,
    images: Iterable[np.ndarray],
    signature_name: str = "serving_default",
) -> Path:
    """Write one single-image Predict request per image (the shape the endpoint is called with)."""
    import tensorflow as tf

    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in images:
            batch = np.asarray(image, dtype=np.float32)[np.newaxis, ...]
            writer.write(prediction_log(model_name, signature_name, {input_name: batch}))
    return path
