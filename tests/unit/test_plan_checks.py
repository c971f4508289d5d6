"""What ``plan`` refuses without touching anything (issue 12 item 5): each problem names the field and the fix."""

from __future__ import annotations

import copy
import tarfile
from pathlib import Path

import jsonschema
import pytest

from elastic_inference.params import PARAM_SPECS, check_run_config
from tests.unit.support import saved_model_dir


@pytest.fixture
def params(tmp_path: Path) -> dict:
    out = {name: copy.deepcopy(spec[0]) for name, spec in PARAM_SPECS.items()}
    out["model_source"] = str(saved_model_dir(tmp_path))
    return out


def test_the_defaults_pass(params: dict) -> None:
    assert check_run_config(params) == []


def test_unknown_keys_are_refused_with_the_closest_name(params: dict) -> None:
    (problem,) = check_run_config({**params, "max_replica": 3})
    assert "unknown parameter 'max_replica'" in problem and "did you mean 'max_replicas'" in problem
    (problem,) = check_run_config({**params, "load_test": {"hold_second": 3}})
    assert "unknown load_test field(s) ['hold_second']" in problem and "hold_seconds" in problem
    # ... and by the trigger form's schemas already
    for name, value in (("load_test", {"hold_second": 3}), ("node_pool", {"nmae": "x"})):
        with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
            jsonschema.validate(value, PARAM_SPECS[name][1])
    jsonschema.validate({"spot_price_limit": [], "security_group_ids": ["sg-1"]}, PARAM_SPECS["node_pool"][1])


def test_upper_bounds(params: dict) -> None:
    problems = check_run_config({**params, "qps_target": 1e9})
    assert "qps_target must be <= 10000, got 1000000000" in problems
    assert any("would offer" in p and "lower qps_target" in p for p in problems)
    problems = check_run_config({**params, "qps_target": 5000, "max_replicas": 100})
    assert any("the load test would offer 250000 RPS" in p for p in problems)
    problems = check_run_config({**params, "load_test": {"rps_per_user": 0.001}})
    assert any("locust users" in p and "load_test.rps_per_user" in p for p in problems)
    assert "load_test.hold_seconds must be <= 21600, got 100000" in check_run_config(
        {**params, "load_test": {"hold_seconds": 100000}}
    )


def test_derived_names_longer_than_a_label_name_the_fix(params: dict) -> None:
    name = "d" * 55  # a valid DNS label on its own
    problems = check_run_config({**params, "deployment_name": name})
    pv = next(p for p in problems if "alicloud-pvname" in p)
    assert f"deployment_name {name!r} (55 characters)" in pv and "'default-" in pv
    assert "use a deployment_name of at most 49 characters" in pv
    assert any("sls.ingress.route" in p for p in problems)
    assert not check_run_config({**params, "deployment_name": "d" * 30})


def test_model_layout_is_checked_in_plan(params: dict, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (problem,) = check_run_config({**params, "model_source": str(empty)})
    assert "is not a model TF Serving can load" in problem and "saved_model.pb" in problem
    half = tmp_path / "half"
    half.mkdir()
    (half / "saved_model.pb").write_bytes(b"pb")
    (problem,) = check_run_config({**params, "model_source": str(half)})
    assert "no variables/ directory" in problem
    good, bad = tmp_path / "good.tar.gz", tmp_path / "bad.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        tf.add(params["model_source"], arcname="fashion-mnist/1")
    with tarfile.open(bad, "w:gz") as tf:
        tf.add(half, arcname="m")
    assert check_run_config({**params, "model_source": str(good)}) == []
    (problem,) = check_run_config({**params, "model_source": str(bad)})
    assert "the archive holds no complete SavedModel" in problem


def test_node_pool_fields_are_checked_in_plan(params: dict) -> None:
    pool = {**params["node_pool"], "labels": {"seldon": "x" * 70}, "taints": [{"key": "a", "effect": "Bogus"}]}
    problems = check_run_config({**params, "node_pool": pool})
    assert any("node_pool.labels['seldon']" in p for p in problems)
    assert any("node_pool.taints['a']: effect 'Bogus'" in p for p in problems)
