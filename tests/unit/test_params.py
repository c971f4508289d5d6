"""Run-parameter checks a JSON schema cannot express."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from elastic_inference.params import PARAM_SPECS, check_run_config
from tests.unit.support import saved_model_dir


def _defaults(tmp_path) -> dict:
    params = {name: copy.deepcopy(spec[0]) for name, spec in PARAM_SPECS.items()}
    params["model_source"] = str(saved_model_dir(tmp_path))
    return params


def test_defaults_are_valid_against_their_own_schemas(tmp_path) -> None:
    for default, schema, _doc in PARAM_SPECS.values():
        jsonschema.validate(default, schema)
    assert check_run_config(_defaults(tmp_path)) == []


def test_min_above_max_names_both_fields(tmp_path) -> None:
    params = _defaults(tmp_path) | {"min_replicas": 5, "max_replicas": 2}
    (problem,) = check_run_config(params)
    assert "min_replicas (5)" in problem and "max_replicas (2)" in problem


@pytest.mark.parametrize("field", ["model_name", "namespace", "deployment_name"])
def test_bad_names_are_rejected(tmp_path, field: str) -> None:
    params = _defaults(tmp_path) | {field: "Bad_Name"}
    (problem,) = check_run_config(params)
    assert field in problem and "DNS-1123" in problem


def test_missing_model_is_rejected(tmp_path) -> None:
    assert "does not exist" in check_run_config(_defaults(tmp_path) | {"model_source": str(tmp_path / "nope")})[0]
    assert "model_source is empty" in check_run_config(_defaults(tmp_path) | {"model_source": ""})[0]


def test_pool_min_above_max(tmp_path) -> None:
    params = _defaults(tmp_path)
    params["node_pool"] |= {"min_instances": 4, "max_instances": 2}
    assert any("node_pool.min_instances" in p for p in check_run_config(params))


def test_schema_rejects_bad_pool_and_format() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "p", "instance_types": []}, PARAM_SPECS["node_pool"][1])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("v3", PARAM_SPECS["hpa_metric_format"][1])


def test_partial_objects_keep_their_defaults(tmp_path) -> None:
    from elastic_inference.params import with_object_defaults

    params = _defaults(tmp_path) | {"load_test": {"hold_seconds": 12}, "node_pool": {"name": "p2"}}
    merged = with_object_defaults(params)
    assert merged["load_test"]["hold_seconds"] == 12
    assert merged["load_test"]["rps_per_user"] == PARAM_SPECS["load_test"][0]["rps_per_user"]
    assert merged["node_pool"]["name"] == "p2"
    assert merged["node_pool"]["instance_types"] == PARAM_SPECS["node_pool"][0]["instance_types"]
    assert params["load_test"] == {"hold_seconds": 12}  # the input is left alone


def test_the_demos_run_conf_is_valid_against_the_dags_param_schemas() -> None:
    """``make demo`` triggers ``elastic_inference`` with ``demo.RUN_CONF``: every key it passes must be one the DAG's
    Param schemas accept (an unknown key fails the run at trigger time, after the demo has trained its model)."""
    from demo.__main__ import RUN_CONF

    for name, value in RUN_CONF.items():
        assert name in PARAM_SPECS, f"the demo passes {name!r}, which is not a param of elastic_inference"
        jsonschema.validate(value, PARAM_SPECS[name][1])
