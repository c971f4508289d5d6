"""The ``elastic_inference`` DAG's run: its Params (generated from the specs, so each default, range and enum is
written once) and the resolution ``plan`` does - params (+ the model Asset event) → the specs, every
``problems()`` run before anything in the cloud is touched."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from elastic_inference.exceptions import SpecError
from elastic_inference.node_pool_spec import NODE_POOL_SCHEMA, SEED_NODE_POOL, NodePoolSpec
from elastic_inference.specs._base import Spec, coerce, field_schema
from elastic_inference.specs.load_test import PARAM_KEYS as LOAD_TEST_KEYS
from elastic_inference.specs.load_test import LoadTestSpec
from elastic_inference.specs.model import ModelSpec
from elastic_inference.specs.rollout import PARAM_KEYS as ROLLOUT_KEYS
from elastic_inference.specs.rollout import RolloutSpec
from elastic_inference.specs.serving import ServingSpec

# Top-level params, in the trigger form's order: name -> (spec, field) for a scalar, or None for an object
# param (defined in OBJECT_PARAMS).
_SCALARS: dict[str, tuple[type[Spec], str] | None] = {
    "model_source": (ModelSpec, "source"),
    "model_name": (ModelSpec, "name"),
    "model_version": (ModelSpec, "version"),
    "bucket": (ModelSpec, "bucket"),
    "prefix": (ModelSpec, "prefix"),
    "namespace": (ServingSpec, "namespace"),
    "deployment_name": (ServingSpec, "name"),
    "ingress_host": (ServingSpec, "ingress_host"),
    "node_pool": None,
    "gpu_count": (ServingSpec, "gpu_count"),
    "min_replicas": (ServingSpec, "min_replicas"),
    "max_replicas": (ServingSpec, "max_replicas"),
    "qps_target": (ServingSpec, "qps_target"),
    "hpa_metric_format": (ServingSpec, "hpa_metric_format"),
    "serving_backend": (ServingSpec, "serving_backend"),
    "slo_p95_ms": (LoadTestSpec, "slo_p95_ms"),
    "slo_max_error_rate": (LoadTestSpec, "slo_error_rate"),
    "load_test": None,
    "rollout": None,
    "teardown": None,
}
OBJECT_PARAMS: dict[str, tuple[Any, dict[str, Any], str]] = {
    "node_pool": (SEED_NODE_POOL, NODE_POOL_SCHEMA, "Elastic node pool (seed step 1)."),
    "load_test": (
        LoadTestSpec.defaults(LOAD_TEST_KEYS),
        LoadTestSpec.object_schema(LOAD_TEST_KEYS),
        "Load test shape (ramp, hold; offered RPS = qps_target × max_replicas × fill_factor) and how long "
        "to watch scale-in afterwards. metric_lag_seconds: how far the QPS metric trails the load (SLS "
        "window + delay, 25 s on ACK).",
    ),
    "rollout": (
        RolloutSpec.defaults(ROLLOUT_KEYS),
        RolloutSpec.object_schema(ROLLOUT_KEYS),
        "How a new version replaces the serving one: strategy auto (canary when a version serves, else deploy), "
        "canary or direct; canary weights (steps, %) each held step_seconds under load; the bounds of the canary "
        "vs the stable version (error rate, p95 ratio and increase, agreement with the labels); optional human "
        "approval; rollback_to: put that earlier version back through the same path.",
    ),
    "teardown": (
        False,
        {"type": "boolean"},
        "Remove what this run created (Seldon deployment, ingress, volume) at the end. The node pool and "
        "the uploaded model are shared and always kept.",
    ),
}


def param_specs() -> dict[str, tuple[Any, dict[str, Any], str]]:
    """name -> (default, JSON schema keywords, description); the DAG wraps each in ``airflow.sdk.Param``."""
    out: dict[str, tuple[Any, dict[str, Any], str]] = {}
    for name, source in _SCALARS.items():
        if source is None:
            default, schema, doc = OBJECT_PARAMS[name]
            out[name] = (copy.deepcopy(default), copy.deepcopy(schema), doc)
            continue
        spec, field_name = source
        f = next(f for f in dataclasses.fields(spec) if f.name == field_name)
        out[name] = (copy.deepcopy(getattr(spec(), field_name)), field_schema(f), f.metadata["doc"])
    return out


def with_object_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Object params given in part (``{"load_test": {"hold_seconds": 30}}``) keep the defaults of the keys
    they leave out, as a user of the trigger form or the REST API would expect."""
    merged = dict(params)
    for name, (default, _schema, _doc) in OBJECT_PARAMS.items():
        if isinstance(default, dict):
            merged[name] = {**copy.deepcopy(default), **(params.get(name) or {})}
    return merged


@dataclasses.dataclass(frozen=True)
class RunSpecs:
    """Everything one run deploys and checks, resolved and validated."""

    model: ModelSpec
    serving: ServingSpec
    node_pool: NodePoolSpec
    load_test: LoadTestSpec
    teardown: bool = False
    rollout: RolloutSpec = dataclasses.field(default_factory=RolloutSpec)

    def to_dict(self) -> dict[str, Any]:
        """The plan task's XCom: one dict per spec, passed whole to the operators."""
        return {
            "model": self.model.to_dict(),
            "serving": self.serving.to_dict(),
            "node_pool": self.node_pool.to_dict(),
            "load_test": self.load_test.to_dict(),
            "teardown": self.teardown,
            "rollout": self.rollout.to_dict(),
        }


def _pick(params: Mapping[str, Any], spec: type[Spec]) -> dict[str, Any]:
    """The top-level params that set fields of ``spec``, keyed by field."""
    out: dict[str, Any] = {}
    for name, source in _SCALARS.items():
        if source is not None and source[0] is spec and name in params:
            value = params[name]
            if value is None and _kind(spec, source[1]) == ("string", False):
                value = ""  # the trigger form sends an emptied optional text field as null: it means "empty"
            out[source[1]] = value
    return out


def _kind(spec: type[Spec], field_name: str) -> tuple[str, bool]:
    f = next(f for f in dataclasses.fields(spec) if f.name == field_name)
    return f.metadata["kind"], bool(f.metadata["optional"])


# Params the run reads besides the form's: samples_path (from the model Asset event).
_EXTRA_PARAMS = ("samples_path",)


def unknown_param_problems(params: Mapping[str, Any]) -> list[str]:
    """A key the run does not know (``max_replica``) is refused, not silently ignored."""
    import difflib

    known = [*_SCALARS, *_EXTRA_PARAMS]
    out = []
    for name in sorted(set(params) - set(known)):
        close = difflib.get_close_matches(name, known, n=1)
        out.append(
            f"unknown parameter {name!r}: " + (f"did you mean {close[0]!r}?" if close else f"known are {sorted(known)}")
        )
    return out


def resolve(params: Mapping[str, Any]) -> tuple[RunSpecs | None, list[str]]:
    """Params (object params may be partial; Asset-event values already folded in) → the run's specs and
    every problem found, each naming the param and the fix. The specs are None when a value could not even be
    read as its type."""
    params = with_object_defaults(params)
    problems: list[str] = unknown_param_problems(params)

    def build(spec: Any, values: Any, **overrides: Any) -> Any:
        try:
            return spec.from_mapping(values, **overrides)
        except SpecError as e:
            problems.extend(e.problems)
            return None

    rollout = build(RolloutSpec, params["rollout"])
    rollback_to = rollout.rollback_to if rollout is not None else None
    model_values = _pick(params, ModelSpec) | ({"version": rollback_to} if rollback_to else {})
    model = build(ModelSpec, model_values, samples_path=params.get("samples_path") or "")
    if model is not None and not rollback_to:
        model = model.with_source_version()
    pool = build(NodePoolSpec, params["node_pool"])
    if pool is not None:
        problems.extend(f"node_pool.{p}" for p in pool.problems(cluster_vswitches=True))
    serving_values = _pick(params, ServingSpec)
    if model is not None:
        serving_values |= {"model_name": model.name, "model_version": model.version}
    if pool is not None:
        serving_values["node_selector"] = dict(pool.labels)
    serving = build(ServingSpec, serving_values)
    load_values = {**params["load_test"], **_pick(params, LoadTestSpec)}
    for key in ("qps_target", "max_replicas"):
        if key in params:
            load_values[key] = params[key]
    load_test = build(LoadTestSpec, load_values)
    for spec in (model, serving, load_test, rollout):
        if spec is not None:
            problems.extend(spec.problems())
    if rollback_to:  # nothing is uploaded: the version is already in OSS (its samples still come from beside it)
        problems[:] = [p for p in problems if not p.startswith("model_source")]
    if serving is not None and pool is not None and serving.gpu_count > 0 and not pool.has_gpu:
        problems.append(
            f"gpu_count={serving.gpu_count} needs a GPU instance type in node_pool.instance_types "
            f"(gn*/vgn*/sgn*/ebmgn* families), got {list(pool.instance_types)}: add one or set "
            "gpu_count=0"
        )
    teardown = False
    try:
        teardown = coerce(params.get("teardown", False), "boolean", "teardown")
    except SpecError as e:
        problems.extend(e.problems)
    if model is not None:
        model = dataclasses.replace(model, samples_path=model.resolved_samples_path)
    problems[:] = list(dict.fromkeys(problems))  # a field two specs share (qps_target) is named once
    if problems or model is None or serving is None or pool is None or load_test is None or rollout is None:
        return None, problems
    specs = RunSpecs(
        model=model, serving=serving, node_pool=pool, load_test=load_test, teardown=teardown, rollout=rollout
    )
    return specs, problems


def event_model(extra: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The model an Asset event names: the training DAG's ``extra`` itself (``path``, ``version``, ``samples``),
    or, for an event an AssetWatcher's trigger made, its ``payload`` (Airflow stores a trigger's event as
    ``{"from_trigger": True, "payload": <the TriggerEvent's payload>}``, ``airflow.models.trigger``)."""
    if extra is not None and extra.get("from_trigger") and isinstance(extra.get("payload"), Mapping):
        return extra["payload"]
    return extra


def plan_run(
    params: Mapping[str, Any],
    asset_event_extra: Mapping[str, Any] | None = None,
    *,
    preflight: Any = None,
) -> dict[str, Any]:
    """What the DAG's ``plan`` task does: fold in the model Asset event (when the params name no model), resolve
    the specs and refuse the run - naming every problem - before any task touches the cloud.

    ``preflight(specs) -> problems``: the checks that read (never write) the environment - connections, the
    cluster (``elastic_inference.preflight.check``); the DAG passes it, pure callers leave it out."""
    params = dict(params)
    asset_event_extra = event_model(asset_event_extra)
    if asset_event_extra is not None and isinstance(asset_event_extra.get("params"), Mapping):
        # the OSS watcher's configured run params (namespace, deployment_name, samples_path...) for its model
        params.update(asset_event_extra["params"])
    if asset_event_extra is not None and not params.get("model_source"):
        params["model_source"] = asset_event_extra.get("path", "")
        params["model_version"] = asset_event_extra.get("version", params.get("model_version", 1))
        params["samples_path"] = params.get("samples_path") or asset_event_extra.get("samples", "")
    specs, problems = resolve(params)
    if specs is not None and preflight is not None:
        problems = [*problems, *preflight(specs)]
    if problems or specs is None:
        raise SpecError("invalid run parameters:\n- " + "\n- ".join(problems), problems=problems)
    return specs.to_dict()
