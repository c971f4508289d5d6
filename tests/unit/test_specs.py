"""Run specs: one coercion of rendered values, problems naming the field and the fix, Params generated from the
specs, and the DAG's plan refusing a bad run before any task touches the cloud."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from elastic_inference.exceptions import NodePoolSpecError, SpecError
from elastic_inference.node_pool_spec import MULTI_AZ_POLICIES, SEED_NODE_POOL, SPOT_STRATEGIES, NodePoolSpec
from elastic_inference.specs import LoadTestSpec, ModelSpec, ServingSpec, coerce
from elastic_inference.specs.run import param_specs, plan_run
from tests.unit.support import saved_model_dir

MODEL = saved_model_dir(__import__("tempfile").mkdtemp(prefix="ei-model-"))


# -- one coercion path -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("10", "integer", 10),
        ("10.0", "integer", 10),
        (10.0, "integer", 10),
        (" 3 ", "integer", 3),
        ("0.5", "number", 0.5),
        ("10", "number", 10),
        (2.0, "number", 2),
        (7, "number", 7),
        ("True", "boolean", True),
        ("false", "boolean", False),
        ("1", "boolean", True),
        (False, "boolean", False),
        ("{'seldon': 'fm'}", "object", {"seldon": "fm"}),
        ('{"a": 1}', "object", {"a": 1}),
        ("['ecs.gn6i-c4g1.xlarge']", "array", ["ecs.gn6i-c4g1.xlarge"]),
        (("a", "b"), "array", ["a", "b"]),
        (5, "string", "5"),
    ],
)
def test_coerce_turns_rendered_strings_into_the_declared_type(value, kind, expected) -> None:
    out = coerce(value, kind, "f")
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("2.5", "integer"),
        ("ten", "number"),
        (True, "integer"),
        ("maybe", "boolean"),
        ("[1,", "array"),
        ("[1]", "object"),
        (None, "integer"),
    ],
)
def test_coerce_names_the_field_and_the_type(value, kind) -> None:
    with pytest.raises(SpecError, match=r"^load_test\.x must be .+, got "):
        coerce(value, kind, "load_test.x")


def test_optional_values_rendered_as_none_become_none() -> None:
    assert coerce("None", "number", "slo_p95_ms", optional=True) is None
    assert coerce("", "number", "slo_p95_ms", optional=True) is None


def test_load_test_spec_from_rendered_strings() -> None:
    spec = LoadTestSpec.from_mapping(
        {
            "ramp_seconds": "2",
            "hold_seconds": "10.5",
            "fill_factor": "0.8",
            "workers": "2",
            "slo_p95_ms": "None",
            "flatten_images": "True",
            "max_replicas": "3",
        }
    )
    assert (spec.ramp_seconds, spec.hold_seconds, spec.fill_factor, spec.workers) == (2, 10.5, 0.8, 2)
    assert spec.slo_p95_ms is None and spec.flatten_images is True and spec.max_replicas == 3
    assert spec.problems() == []
    # The whole spec as the text a non-native render gives (a Python literal) or JSON.
    assert LoadTestSpec.from_mapping(str(spec.to_dict())) == spec
    assert LoadTestSpec.from_mapping(spec.to_dict()) == spec


def test_every_coercion_failure_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as err:
        LoadTestSpec.from_mapping({"workers": "two", "hold_seconds": "long", "holds": 1})
    assert len(err.value.problems) == 3
    text = str(err.value)
    assert "load_test.workers must be an integer, got 'two'" in text
    assert "load_test.hold_seconds must be a number, got 'long'" in text
    assert "unknown load_test field(s) ['holds']" in text


def test_problems_name_the_param_and_the_range() -> None:
    problems = LoadTestSpec.from_mapping({"fill_factor": 1.5, "workers": 40, "max_replicas": 0}).problems()
    assert "load_test.fill_factor must be <= 1, got 1.5" in problems
    assert "load_test.workers must be <= 32, got 40" in problems
    assert "max_replicas must be >= 1, got 0" in problems  # a top-level param: named as the user sets it


def test_serving_spec_coerces_and_derives_names() -> None:
    spec = ServingSpec.from_mapping(
        {
            "name": "fm",
            "namespace": "ns",
            "min_replicas": "2",
            "max_replicas": "4",
            "qps_target": "10",
            "gpu_count": "0",
            "node_selector": "{'seldon': 'fm'}",
        }
    )
    assert (spec.min_replicas, spec.max_replicas, spec.qps_target, spec.gpu_count) == (2, 4, 10, 0)
    assert isinstance(spec.qps_target, int) and spec.node_selector == {"seldon": "fm"}
    d = spec.to_dict()
    assert (d["pv_name"], d["pvc_name"], d["secret_name"], d["predictor_service"]) == (
        "ns-fm-model",
        "fm-model",
        "fm-oss",
        "fm-predictor",
    )
    assert ServingSpec.from_mapping(d) == spec  # derived names are accepted back and ignored
    bad = ServingSpec.from_mapping(
        {"name": "Bad_Name", "min_replicas": 5, "max_replicas": 2, "hpa_metric_format": "v3"}
    ).problems()
    assert any(p.startswith("deployment_name 'Bad_Name' is not a DNS-1123 label") for p in bad)
    assert "min_replicas (5) is greater than max_replicas (2): lower min_replicas or raise max_replicas" in bad
    assert "hpa_metric_format='v3': use one of ('v2beta1', 'v2')" in bad


def test_model_spec_problems(tmp_path: Path) -> None:
    spec = ModelSpec.from_mapping({"source": str(saved_model_dir(tmp_path)), "version": "2", "bucket": "B!"})
    assert spec.version == 2
    (problem,) = spec.problems()
    assert problem.startswith("bucket 'B!' is not an OSS bucket name")
    assert ModelSpec.from_mapping({"source": str(tmp_path)}).resolved_samples_path == str(
        tmp_path.parent / "samples.json"
    )


def test_node_pool_spec_from_rendered_mapping_and_back() -> None:
    text = str({**SEED_NODE_POOL, "max_instances": "4", "compensate_with_on_demand": "True"})
    spec = NodePoolSpec.from_mapping(text)
    assert spec.max_instances == 4 and spec.compensate_with_on_demand is True
    assert spec.problems(cluster_vswitches=True) == []
    assert any(p.startswith("vswitch_ids") for p in spec.problems())  # unless the operator fills them in
    assert NodePoolSpec.from_mapping(spec.to_dict()).to_dict() == spec.to_dict()
    with pytest.raises(NodePoolSpecError, match=r"node_pool\.min_instances must be an integer, got 'x'"):
        NodePoolSpec.from_mapping({**SEED_NODE_POOL, "min_instances": "x"})


# -- Params generated from the specs -----------------------------------------------------------------------------
def test_params_are_generated_from_the_specs() -> None:
    specs = param_specs()
    assert specs["max_replicas"][0] == ServingSpec().max_replicas == LoadTestSpec().max_replicas
    assert specs["slo_max_error_rate"][0] == LoadTestSpec().slo_error_rate
    assert specs["load_test"][0] == {k: getattr(LoadTestSpec(), k) for k in specs["load_test"][0]}
    assert specs["node_pool"][1]["properties"]["spot_strategy"]["enum"] == list(SPOT_STRATEGIES)
    assert specs["node_pool"][1]["properties"]["multi_az_policy"]["enum"] == list(MULTI_AZ_POLICIES)
    for _default, schema, _doc in specs.values():
        assert "required" not in schema  # object params may be given in part


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    repo = Path(__file__).resolve().parents[2]
    bag = DagBag(dag_folder=str(repo / "dags" / "elastic_inference.py"))
    assert bag.import_errors == {}
    return bag.dags["elastic_inference"]


@pytest.mark.parametrize(
    "conf",
    [
        {"node_pool": {"labels": {"seldon": "fm-2"}}},
        {"load_test": {"hold_seconds": 30}},
        {"node_pool": {"max_instances": 3}, "load_test": {}},
    ],
)
def test_partial_object_params_are_accepted_at_trigger_time(conf) -> None:
    from airflow.sdk.definitions.param import ParamsDict

    dag = _dag()
    params = ParamsDict(copy.deepcopy(dict(dag.params.items())))
    for key, value in conf.items():
        params[key] = value  # validates against the Param's schema, as a trigger does
    resolved = params.validate()
    specs = plan_run({**resolved, "model_source": str(MODEL)})
    for key, value in conf.items():
        for field, wanted in value.items():
            assert specs[key][field] == wanted
    assert specs["node_pool"]["name"] == SEED_NODE_POOL["name"]  # left-out keys keep their defaults
    assert specs["load_test"]["rps_per_user"] == param_specs()["load_test"][0]["rps_per_user"]


def _run_plan(dag, conf: dict) -> dict:
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.execution_time.context import set_current_context

    params = ParamsDict(copy.deepcopy(dict(dag.params.items())))
    for key, value in conf.items():
        params[key] = value
    import elastic_inference.preflight as preflight

    # No cluster and no connections here: plan's environment checks (tests/integration/test_plan_checks.py) are
    # left out; what remains is the pure resolution.
    saved, preflight.check = preflight.check, lambda specs: []  # type: ignore[assignment]
    try:
        with set_current_context({"params": params.validate()}):  # type: ignore[arg-type]
            return dag.get_task("plan").python_callable()
    finally:
        preflight.check = saved


def test_plan_rejects_a_bad_label_key_before_any_task_touches_the_cloud() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    dag = _dag()
    cloud_tasks = ["node_pool.ensure_node_pool", "model.upload_model"]
    for task_id in cloud_tasks:  # the first tasks that touch the cloud run only after plan succeeded
        assert dag.get_task(task_id).upstream_task_ids == {"plan"}
    conf = {"model_source": str(MODEL), "node_pool": {"labels": {"bad key!": "x"}}}
    with pytest.raises(AirflowFailException) as err:
        _run_plan(dag, conf)
    assert isinstance(err.value, SpecError) and "invalid run parameters" in str(err.value)
    assert "node_pool.labels['bad key!']: label key name must be 1-63 alphanumerics" in str(err.value)


def test_plan_returns_the_specs_whole() -> None:
    dag = _dag()
    out = _run_plan(
        dag,
        {
            "model_source": str(MODEL),
            "max_replicas": 3,
            "qps_target": 5,
            "load_test": {"hold_seconds": 10},
            "slo_p95_ms": 800,
        },
    )
    assert set(out) == {"model", "serving", "node_pool", "load_test", "teardown", "rollout"}
    assert out["load_test"]["max_replicas"] == out["serving"]["max_replicas"] == 3
    assert out["load_test"]["qps_target"] == 5 and out["load_test"]["slo_p95_ms"] == 800
    assert out["serving"]["node_selector"] == SEED_NODE_POOL["labels"]
    assert out["serving"]["model_name"] == out["model"]["name"]
    assert out["model"]["samples_path"] == str(MODEL.parent / "samples.json")
    assert LoadTestSpec.from_mapping(out["load_test"]).hold_seconds == 10


def test_deploy_operators_take_the_serving_and_model_specs_whole(tmp_path: Path) -> None:
    from elastic_inference.operators.ingress import CreateIngressOperator
    from elastic_inference.operators.seldon import DeploySeldonOperator
    from elastic_inference.operators.volume import CreateOssVolumeOperator

    specs = plan_run(
        {
            **{k: v[0] for k, v in param_specs().items()},
            "model_source": str(saved_model_dir(tmp_path)),
            "namespace": "ns",
            "deployment_name": "fm",
            "ingress_host": "fm.example",
            "prefix": "m/",
        }
    )
    # As the plan's templates render them natively: the dicts themselves (or their text otherwise).
    volume = CreateOssVolumeOperator(task_id="v", serving=specs["serving"], model=str(specs["model"]))
    volume.apply_specs()
    assert (volume.namespace, volume.pv_name, volume.pvc_name, volume.credentials_object) == (
        "ns",
        "ns-fm-model",
        "fm-model",
        "fm-oss",
    )
    assert (volume.bucket, volume.path) == ("models", "/m")
    ingress = CreateIngressOperator(task_id="i", serving=specs["serving"])
    ingress.apply_specs()
    assert (ingress.namespace, ingress.name, ingress.service_name, ingress.host) == (
        "ns",
        "fm",
        "fm-predictor",
        "fm.example",
    )
    seldon = DeploySeldonOperator(task_id="s", serving=specs["serving"], sls_project="p")
    seldon.apply_spec()
    seldon.validate()
    assert (seldon.namespace, seldon.name, seldon.model_name, seldon.pvc_name, seldon.max_replicas) == (
        "ns",
        "fm",
        "fashion-mnist",
        "fm-model",
        10,
    )
    assert seldon.node_selector == SEED_NODE_POOL["labels"]
