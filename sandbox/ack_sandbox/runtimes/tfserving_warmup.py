"""SavedModel warmup, as TensorFlow Serving does it before a version becomes AVAILABLE.

Behaviour of ``servables/tensorflow/saved_model_warmup_util.cc`` (``RunSavedModelWarmup``):

- The file is ``<version dir>/assets.extra/tf_serving_warmup_requests``: a TFRecord file of serialized
  ``tensorflow.serving.PredictionLog`` messages. No file: ``No warmup data file found at ...`` and the
  version loads without warmup.
- Every record is replayed once (``num_request_iterations`` defaults to 1) against the loaded model;
  a record that does not parse is ``INVALID_ARGUMENT: Failed to parse warmup record``, more than 1000
  records is ``INVALID_ARGUMENT: Number of warmup records exceeds the maximum (1000)``, a record that
  fails to run fails the load with the run's error. Any failure leaves the version unloaded (state END).
- Logged: ``Starting to read warmup data for model at ...`` and ``Finished reading warmup data for model
  at ... Number of warmup records read: N. Elapsed time (microseconds): T.``

Only ``predict_log`` records are replayed (the stand-in serves Predict over REST); a classify, regress,
multi-inference or session-run record fails the load as UNIMPLEMENTED instead of being skipped silently.

The messages are declared here from ``tensorflow_serving/apis/{prediction_log,predict,model}.proto``
(field numbers as upstream), since the ``tensorflow-serving-api`` wheel would pull in a second TensorFlow.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("tensorflow_serving")

REQUESTS_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # WarmupConsts::kMaxNumRecords
DEFAULT_SIGNATURE = "serving_default"


class Runnable(Protocol):
    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class WarmupError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_CLASSES: dict[str, Any] = {}


def prediction_log_class() -> Any:
    """``tensorflow.serving.PredictionLog`` (the parts warmup reads), built on TensorFlow's TensorProto."""
    if "PredictionLog" in _CLASSES:
        return _CLASSES["PredictionLog"]
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
        wrappers_pb2,  # noqa: F401 - registers google/protobuf/wrappers.proto
    )
    from tensorflow.core.framework import tensor_pb2  # noqa: F401 - registers tensor.proto in the pool

    pool = descriptor_pool.Default()
    name = "ack_sandbox/tensorflow_serving_warmup.proto"
    try:
        pool.FindFileByName(name)
    except KeyError:
        fdp = descriptor_pb2.FileDescriptorProto(
            name=name,
            package="tensorflow.serving",
            syntax="proto3",
            dependency=["tensorflow/core/framework/tensor.proto", "google/protobuf/wrappers.proto"],
        )
        f = descriptor_pb2.FieldDescriptorProto
        opt, msg, string, repeated = f.LABEL_OPTIONAL, f.TYPE_MESSAGE, f.TYPE_STRING, f.LABEL_REPEATED

        def message(msg_name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
            d = descriptor_pb2.DescriptorProto(name=msg_name)
            for field_name, number, label, ftype, type_name in fields:
                d.field.add(
                    name=field_name,
                    number=number,
                    label=label,
                    type=ftype,
                    **({"type_name": type_name} if type_name else {}),
                )
            return d

        fdp.message_type.append(
            message(
                "ModelSpec",
                ("name", 1, opt, string, ""),
                ("version", 2, opt, msg, ".google.protobuf.Int64Value"),
                ("signature_name", 3, opt, string, ""),
            )
        )
        request = message(
            "PredictRequest",
            ("model_spec", 1, opt, msg, ".tensorflow.serving.ModelSpec"),
            ("inputs", 2, repeated, msg, ".tensorflow.serving.PredictRequest.InputsEntry"),
            ("output_filter", 3, repeated, string, ""),
        )
        entry = request.nested_type.add(name="InputsEntry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, label=opt, type=string)
        entry.field.add(name="value", number=2, label=opt, type=msg, type_name=".tensorflow.TensorProto")
        fdp.message_type.append(request)
        fdp.message_type.append(message("PredictLog", ("request", 1, opt, msg, ".tensorflow.serving.PredictRequest")))
        # The other log types are kept as opaque messages: warmup only needs to tell them apart.
        fdp.message_type.append(descriptor_pb2.DescriptorProto(name="OtherLog"))
        log_msg = message(
            "PredictionLog",
            ("predict_log", 6, opt, msg, ".tensorflow.serving.PredictLog"),
            *[
                (other, number, opt, msg, ".tensorflow.serving.OtherLog")
                for other, number in (
                    ("classify_log", 2),
                    ("regress_log", 3),
                    ("multi_inference_log", 4),
                    ("session_run_log", 5),
                    ("predict_streamed_log", 7),
                )
            ],
        )
        log_msg.oneof_decl.add(name="log_type")
        for field in log_msg.field:
            field.oneof_index = 0
        fdp.message_type.append(log_msg)
        pool.Add(fdp)
    for msg_name in ("PredictionLog", "PredictLog", "PredictRequest"):
        _CLASSES[msg_name] = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{msg_name}")
        )
    return _CLASSES["PredictionLog"]


def records(path: Path) -> list[bytes]:
    """The raw records of a TFRecord file (TensorFlow's reader: length and data CRCs are checked)."""
    import tensorflow as tf

    try:
        return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    except Exception as exc:  # noqa: BLE001 - tf.errors.DataLossError and friends
        raise WarmupError(
            "DATA_LOSS", f"{getattr(exc, 'message', exc)}. Please verify your warmup data is in TFRecord format."
        ) from exc


def run_warmup(model: Runnable, version_dir: Path, model_name: str) -> int:
    """Replay the version's warmup requests against ``model``; returns the number of records run."""
    path = version_dir / REQUESTS_FILE
    if not path.exists():
        log.info("No warmup data file found at %s", path)
        return 0
    started = time.perf_counter()
    log.info("Starting to read warmup data for model at %s with model-warmup-options ", path)
    import tensorflow as tf

    cls = prediction_log_class()
    count = 0
    for raw in records(path):
        entry = cls()
        try:
            entry.ParseFromString(raw)
        except Exception as exc:  # noqa: BLE001 - google.protobuf.message.DecodeError
            raise WarmupError("INVALID_ARGUMENT", f"Failed to parse warmup record: {raw[:64]!r} from {path}") from exc
        kind = entry.WhichOneof("log_type")
        if kind != "predict_log":
            raise WarmupError(
                "UNIMPLEMENTED",
                f"Unsupported log_type for warmup: {kind or 'none'} (the sandbox's "
                f"TF Serving replays predict_log records only) at {path}",
            )
        request = entry.predict_log.request
        spec_name = request.model_spec.name
        if spec_name and spec_name != model_name:
            log.warning("warmup record names model %r; replaying it against %r", spec_name, model_name)
        inputs = {key: tf.make_ndarray(tensor) for key, tensor in request.inputs.items()}
        model.run(request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs)
        count += 1
        if count > MAX_RECORDS:
            raise WarmupError(
                "INVALID_ARGUMENT", f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
            )
    elapsed_us = int((time.perf_counter() - started) * 1e6)
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        count,
        elapsed_us,
    )
    return count
