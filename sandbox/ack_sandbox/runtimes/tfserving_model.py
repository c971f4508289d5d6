"""TensorFlow Serving's model state: version discovery, loading, the availability-preserving policy.

Mirrors ``tensorflow_serving`` behaviour (sources read: ``model_servers/main.cc``, ``server_core.cc``,
``sources/storage_path/file_system_storage_path_source.cc``, ``core/availability_preserving_policy.h``):

- ``model_base_path`` holds numeric version directories; anything else is ignored. The version policy
  (``tfserving_config.VersionPolicy``; ``model_version_policy`` of ``--model_config_file``) picks the aspired
  versions: by default ``latest { num_versions: 1 }`` (the highest), else ``latest { num_versions: N }``,
  ``all {}`` or ``specific { versions: ... }`` (a version on disk that the policy does not name is never
  loaded; a named version missing from disk is logged and waited for).
- The base path is polled every ``--file_system_poll_wait_seconds`` (default 1). A missing base path or
  one with no versions is logged and retried, the server keeps waiting.
- New aspired versions are loaded *before* versions no longer aspired are unloaded
  (AvailabilityPreservingPolicy), so the model stays available during a rollout; a version that comes back
  (e.g. the newer one was deleted) is loaded again. A version that fails to load ends in state END with its
  error and is retried ``--max_num_load_retries`` times (default 5), ``--load_retry_interval_micros`` apart
  (default 60 s), as ``LoaderHarness`` does.
- Version states: START, LOADING, AVAILABLE, UNLOADING, END (``get_model_status.proto``); the status list
  is newest first (``ServableStateMonitor::VersionMap`` is ordered by ``std::greater<Version>``).
- ``version_labels`` map a label to a version (``/v1/models/NAME/labels/LABEL``); a label of a version that is
  not AVAILABLE is refused, as without ``--allow_version_labels_for_unavailable_models``.
- A loaded version replays its warmup requests (``assets.extra/tf_serving_warmup_requests``,
  ``tfserving_warmup.py``) before it becomes AVAILABLE; ``--enable_model_warmup=false`` skips that.

No web code here; ``tfserving.py`` is the wire.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ack_sandbox.runtimes.tfserving_config import VersionPolicy
from ack_sandbox.runtimes.tfserving_warmup import WarmupError, run_warmup

log = logging.getLogger("tensorflow_serving")

DEFAULT_SIGNATURE = "serving_default"


class ServingError(Exception):
    """A TF Serving status error: ``code`` is the canonical error code name, mapped to HTTP by the wire."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# tensorflow_serving/util/net_http/... ToHTTPStatusCode: canonical code -> HTTP status.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


def import_tensorflow() -> types.ModuleType:
    """Import TensorFlow without Keras.

    The real server is C++ and has no Keras; ``import tensorflow`` in Python eagerly imports Keras (and
    through it scikit-learn), about half of its ~10 s import. Serving a SavedModel needs none of it, so
    a placeholder ``keras`` module (not a package: every ``keras.*`` import fails with ImportError, which
    TensorFlow's optional Keras hooks tolerate) keeps it out. Measured: import 5.2 s / RSS 500 MiB
    instead of 10-12 s / 615 MiB (benchmarks/runtimes.py).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if (
        "tensorflow" not in sys.modules
        and "keras" not in sys.modules
        and os.environ.get("ACK_SANDBOX_TF_WITH_KERAS", "").lower() not in ("1", "true")
    ):
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec("keras")
        placeholder = types.ModuleType("keras", "placeholder: the TF Serving runtime serves SavedModels only")
        placeholder.__spec__ = spec  # TF reads the real package's location from it, never imports it
        sys.modules["keras"] = placeholder
    import tensorflow as tf

    return tf


@dataclass
class TensorSpecInfo:
    name: str  # the signature key, e.g. "images"
    tensor_name: str  # the graph tensor, e.g. "serving_default_images:0"
    dtype: str  # DT_FLOAT ...
    shape: list[int] | None  # -1 for unknown dims; None for unknown rank


@dataclass
class SignatureInfo:
    key: str
    method_name: str
    inputs: dict[str, TensorSpecInfo]
    outputs: dict[str, TensorSpecInfo]


_NP_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_INT16": np.int16,
    "DT_INT8": np.int8,
    "DT_UINT8": np.uint8,
    "DT_BOOL": np.bool_,
    "DT_HALF": np.float16,
}


def numpy_dtype(dtype: str) -> Any:
    try:
        return _NP_DTYPES[dtype]
    except KeyError:
        raise ServingError("UNIMPLEMENTED", f"dtype {dtype} is not supported by the sandbox's TF Serving") from None


class LoadedModel:
    """One loaded SavedModel version: its signature defs (from saved_model.pb) and callable signatures."""

    def __init__(self, path: Path) -> None:
        tf = import_tensorflow()
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        pb_path = path / "saved_model.pb"
        if not pb_path.exists():
            raise ServingError(
                "NOT_FOUND",
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}",
            )
        try:
            proto.ParseFromString(pb_path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
            raise ServingError("DATA_LOSS", f"Could not parse SavedModel proto at {pb_path}: {exc}") from exc
        serve_graphs = [mg for mg in proto.meta_graphs if "serve" in mg.meta_info_def.tags]
        if not serve_graphs:
            raise ServingError(
                "NOT_FOUND",
                "Could not find meta graph def matching supplied tags: { serve }. To inspect available "
                "tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`",
            )
        meta_graph = serve_graphs[0]
        self.signature_def_json: dict[str, Any] = {
            key: json_format.MessageToDict(sig, preserving_proto_field_name=True)
            for key, sig in meta_graph.signature_def.items()
        }
        self.signatures: dict[str, SignatureInfo] = {}
        for key, sig in meta_graph.signature_def.items():
            self.signatures[key] = SignatureInfo(
                key=key,
                method_name=sig.method_name,
                inputs={k: _tensor_info(k, v) for k, v in sig.inputs.items()},
                outputs={k: _tensor_info(k, v) for k, v in sig.outputs.items()},
            )
        try:
            self._loaded = tf.saved_model.load(str(path), tags=["serve"])
        except Exception as exc:  # noqa: BLE001 - TF raises many types; all mean "load failed"
            raise ServingError("INTERNAL", f"{type(exc).__name__}: {exc}") from exc
        self._tf = tf
        self._functions = dict(self._loaded.signatures)

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fn = self._functions.get(signature)
        if fn is None:
            raise ServingError("INVALID_ARGUMENT", f'Serving signature name: "{signature}" not found in signature def')
        try:
            result = fn(**{k: self._tf.constant(v) for k, v in inputs.items()})
        except Exception as exc:  # noqa: BLE001 - TF op errors surface as many types
            raise ServingError("INVALID_ARGUMENT", _tf_error_message(exc)) from exc
        return {k: v.numpy() for k, v in result.items()}


def _tensor_info(key: str, info: Any) -> TensorSpecInfo:
    from tensorflow.core.framework import types_pb2

    dtype_name = types_pb2.DataType.Name(info.dtype)
    if info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = [int(d.size) for d in info.tensor_shape.dim]
    return TensorSpecInfo(name=key, tensor_name=info.name, dtype=dtype_name, shape=shape)


def _tf_error_message(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.strip().splitlines()[0] if message.strip() else type(exc).__name__


# --- versions and the manager -------------------------------------------------------------------------


def numeric_versions(base_path: Path) -> list[int]:
    """Numeric child directories of the base path, ascending (file_system_storage_path_source.cc)."""
    versions = []
    for child in base_path.iterdir():
        if child.is_dir() and child.name.isdigit():
            versions.append(int(child.name))
    return sorted(versions)


@dataclass
class VersionState:
    version: int
    state: str = "START"
    error_code: str = "OK"
    error_message: str = ""
    model: LoadedModel | None = field(default=None, repr=False)
    attempts: int = 0
    failed_at: float = 0.0

    def status_json(self) -> dict[str, Any]:
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


class ModelManager:
    """Serves one model name from one base path (``--model_name``/``--model_base_path``, or one ``config``
    of ``--model_config_file``) under a version policy."""

    def __init__(
        self,
        name: str,
        base_path: str,
        *,
        loader: type[LoadedModel] = LoadedModel,
        warmup: bool = True,
        policy: VersionPolicy | None = None,
        labels: dict[str, int] | None = None,
        max_load_retries: int = 5,
        load_retry_interval: float = 60.0,
    ) -> None:
        self.name = name
        self.base_path = Path(base_path)
        self.policy = policy or VersionPolicy()
        self.labels = dict(labels or {})
        self._loader = loader
        self._warmup = warmup  # --enable_model_warmup
        self._max_retries = max_load_retries
        self._retry_interval = load_retry_interval
        self._lock = threading.Lock()
        self._versions: dict[int, VersionState] = {}
        self._last_fs_error: str | None = None
        self._missing_logged: set[int] = set()

    # -- queries (called from request handlers) --

    def statuses(self, version: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if not self._versions:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {self.name}")
            if version is None:
                return [v.status_json() for v in sorted(self._versions.values(), key=lambda s: -s.version)]
            state = self._versions.get(version)
            if state is None:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model {self.name}")
            return [state.status_json()]

    def label_version(self, label: str) -> int:
        """The version a ``version_labels`` entry names (ServerCore::GetModelVersionForLabel)."""
        version = self.labels.get(label)
        if version is None:
            raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
        return version

    def servable(self, version: int | None) -> tuple[int, LoadedModel]:
        with self._lock:
            available = {v: s for v, s in self._versions.items() if s.state == "AVAILABLE" and s.model}
            if version is None:
                if available:
                    latest = max(available)
                    return latest, available[latest].model  # type: ignore[return-value]
                raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({self.name})")
            if version in available:
                return version, available[version].model  # type: ignore[return-value]
            raise ServingError("NOT_FOUND", f"Servable not found for request: Specific({self.name}, {version})")

    def has_available(self) -> bool:
        with self._lock:
            return any(s.state == "AVAILABLE" for s in self._versions.values())

    # -- the file-system poll, one round --

    def poll_once(self) -> list[VersionState]:
        """Look at the base path; load the aspired versions, then unload available ones no longer aspired.

        Blocking (TensorFlow loads synchronously); run it in a worker thread. Returns versions that
        failed to load in this round.
        """
        try:
            versions = numeric_versions(self.base_path)
        except FileNotFoundError:
            self._fs_error(
                "FileSystemStoragePathSource encountered a filesystem access error: Could not find base "
                f"path {self.base_path} for servable {self.name} with error NOT_FOUND: {self.base_path} not found"
            )
            return []
        except OSError as exc:
            self._fs_error(
                "FileSystemStoragePathSource encountered a filesystem access error: "
                f"{exc.strerror or exc} for servable {self.name} at {self.base_path}"
            )
            return []
        if not versions:
            self._fs_error(
                f"No versions of servable {self.name} found under base path {self.base_path}. Did you forget "
                "to name your leaf directory as a number (eg. '/1/')?"
            )
            return []
        self._last_fs_error = None
        aspired = self.policy.aspired(versions)
        if self.policy.kind == "specific":
            for missing in sorted(set(self.policy.versions) - set(versions) - self._missing_logged):
                log.warning(
                    "Version %d of servable %s, which was requested to be served as a specific version in the "
                    "servable's version policy, was not found in the file system",
                    missing,
                    self.name,
                )
                self._missing_logged.add(missing)
        failed: list[VersionState] = []
        now = time.monotonic()
        for version in sorted(aspired, reverse=True):
            with self._lock:
                current = self._versions.get(version)
            if current is not None and current.state in ("LOADING", "AVAILABLE", "UNLOADING"):
                continue
            if current is not None and current.error_code != "OK":
                if current.attempts > self._max_retries or now - current.failed_at < self._retry_interval:
                    continue
                log.info("Retrying load of servable version {name: %s version: %d}", self.name, version)
            state = self._load(version, attempts=(current.attempts if current is not None else 0) + 1)
            if state.state != "AVAILABLE":
                failed.append(state)
        # Unload versions that are no longer aspired, but only once an aspired one is available.
        with self._lock:
            aspired_ok = any(
                self._versions.get(v) is not None and self._versions[v].state == "AVAILABLE" for v in aspired
            )
            stale = [s for v, s in self._versions.items() if v not in aspired and s.state == "AVAILABLE"]
        if aspired_ok:
            for state in stale:
                self._unload(state)
        return failed

    def _fs_error(self, message: str) -> None:
        # TF Serving logs this on every poll; log it once per distinct message to keep container logs usable.
        if message != self._last_fs_error:
            log.error("%s", message)
            self._last_fs_error = message

    def _load(self, version: int, attempts: int = 1) -> VersionState:
        servable = f"{{name: {self.name} version: {version}}}"
        state = VersionState(version=version, attempts=attempts)
        with self._lock:
            self._versions[version] = state
        log.info("Successfully reserved resources to load servable %s", servable)
        log.info("Approving load for servable version %s", servable)
        log.info("Loading servable version %s", servable)
        with self._lock:
            state.state = "LOADING"
        path = self.base_path / str(version)
        log.info("Reading SavedModel from: %s", path)
        started = time.perf_counter()
        try:
            model = self._loader(path)
            if self._warmup:  # before AVAILABLE, as SavedModelBundleFactory does: no request meets a cold model
                run_warmup(model, path, self.name)
        except Exception as exc:  # noqa: BLE001 - any load failure ends the version with its cause
            code, message = (
                (exc.code, exc.message) if isinstance(exc, (ServingError, WarmupError)) else ("UNKNOWN", repr(exc))
            )
            with self._lock:
                state.state, state.error_code, state.error_message = "END", code, message
                state.failed_at = time.monotonic()
            log.error("Loading servable: %s failed: %s", servable, message)
            return state
        with self._lock:
            state.model, state.state = model, "AVAILABLE"
        log.info(
            "SavedModel load for tags { serve }; Status: success: OK. Took %d microseconds.",
            int((time.perf_counter() - started) * 1e6),
        )
        log.info("Successfully loaded servable version %s", servable)
        return state

    def _unload(self, state: VersionState) -> None:
        servable = f"{{name: {self.name} version: {state.version}}}"
        with self._lock:
            state.state = "UNLOADING"
        log.info("Quiescing servable version %s", servable)
        with self._lock:
            state.model, state.state = None, "END"
        log.info("Done unloading servable version %s", servable)
