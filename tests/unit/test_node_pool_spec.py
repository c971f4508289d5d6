"""Node pool spec: validation messages, the create body, and the modify diff (pure logic)."""

from __future__ import annotations

import pytest

from elastic_inference.exceptions import NodePoolSpecError
from elastic_inference.node_pool_spec import NodePoolSpec, Taint, is_gpu_instance_type, spec_from_params

SEED = dict(
    name="fashion-mnist-elastic",
    instance_types=["ecs.gn6i-c4g1.xlarge"],
    vswitch_ids=["vsw-a1", "vsw-b2"],
    min_instances=0,
    max_instances=10,
    spot_strategy="SpotAsPriceGo",
    multi_az_policy="COST_OPTIMIZED",
    on_demand_base_capacity=0,
    on_demand_percentage_above_base_capacity=30,
    compensate_with_on_demand=True,
    labels={"seldon": "fashion-mnist"},
    tags={"app": "fashion-mnist"},
)


def test_seed_pool_body_matches_the_captured_wire_shape():
    body = NodePoolSpec(**SEED).to_create_body()
    assert body["nodepool_info"] == {"name": "fashion-mnist-elastic", "type": "ess"}
    assert body["auto_scaling"] == {"enable": True, "min_instances": 0, "max_instances": 10, "type": "spot"}
    sg = body["scaling_group"]
    assert sg["spot_strategy"] == "SpotAsPriceGo"
    assert sg["multi_az_policy"] == "COST_OPTIMIZED"
    assert sg["on_demand_percentage_above_base_capacity"] == 30
    assert sg["compensate_with_on_demand"] is True
    assert sg["instance_charge_type"] == "PostPaid"
    assert sg["vswitch_ids"] == ["vsw-a1", "vsw-b2"]
    assert sg["tags"] == [{"key": "app", "value": "fashion-mnist"}]
    assert body["kubernetes_config"]["labels"] == [{"key": "seldon", "value": "fashion-mnist"}]
    assert body["kubernetes_config"]["taints"] == []


def test_the_body_is_accepted_by_the_sdk_request_model():
    from alibabacloud_cs20151215 import models

    body = NodePoolSpec(**SEED).to_create_body()
    req = models.CreateClusterNodePoolRequest().from_map(body)
    wire = req.to_map()
    assert wire["scaling_group"]["on_demand_percentage_above_base_capacity"] == 30
    assert wire["auto_scaling"]["type"] == "spot"


@pytest.mark.parametrize(
    ("change", "field_named"),
    [
        ({"min_instances": 11}, "min_instances=11"),
        ({"max_instances": 3000}, "max_instances=3000"),
        ({"instance_types": []}, "instance_types"),
        ({"instance_types": ["gn6i"]}, "are not ECS instance types"),
        ({"vswitch_ids": "vsw-a"}, "vswitch_ids"),
        ({"spot_strategy": "Cheap"}, "spot_strategy='Cheap'"),
        ({"spot_strategy": "SpotWithPriceLimit"}, "spot_price_limit: required"),
        ({"spot_price_limit": {"ecs.gn6i-c4g1.xlarge": 1.2}}, "only used with spot_strategy='SpotWithPriceLimit'"),
        ({"on_demand_percentage_above_base_capacity": 130}, "on_demand_percentage_above_base_capacity=130"),
        ({"multi_az_policy": "PRIORITY"}, "only apply with multi_az_policy='COST_OPTIMIZED'"),
        ({"labels": {"seldon": "not a valid value!"}}, "labels['seldon']"),
        ({"taints": [{"key": "gpu", "value": "x", "effect": "Sometimes"}]}, "effect 'Sometimes'"),
        ({"instance_charge_type": "PrePaid"}, "preemptible (spot) instances are pay-as-you-go"),
        ({"auto_scaling_type": "gpu", "instance_types": ["ecs.g7.xlarge"]}, "no GPU instance type"),
        ({"name": "bad name"}, "name='bad name'"),
        ({"system_disk_size": 10}, "system_disk_size=10"),
    ],
)
def test_invalid_specs_name_the_field_and_the_fix(change, field_named):
    with pytest.raises(NodePoolSpecError) as err:
        NodePoolSpec(**{**SEED, **change}).validate()
    assert field_named in str(err.value)


def test_all_problems_are_reported_at_once():
    spec = NodePoolSpec(**{**SEED, "min_instances": 20, "spot_strategy": "Cheap"})
    problems = spec.problems()
    assert len(problems) >= 2
    assert any("min_instances" in p for p in problems) and any("spot_strategy" in p for p in problems)


def test_spot_with_price_limit_needs_every_type_priced():
    spec = NodePoolSpec(
        **{
            **SEED,
            "instance_types": ["ecs.gn6i-c4g1.xlarge", "ecs.gn7i-c8g1.2xlarge"],
            "spot_strategy": "SpotWithPriceLimit",
            "spot_price_limit": {"ecs.gn6i-c4g1.xlarge": "0.8"},
        }
    )
    assert any("no price for ['ecs.gn7i-c8g1.2xlarge']" in p for p in spec.problems())
    ok = NodePoolSpec(
        **{**SEED, "spot_strategy": "SpotWithPriceLimit", "spot_price_limit": {"ecs.gn6i-c4g1.xlarge": "0.8"}}
    )
    assert ok.to_create_body()["scaling_group"]["spot_price_limit"] == [
        {"instance_type": "ecs.gn6i-c4g1.xlarge", "price_limit": "0.8"}
    ]


def test_gpu_detection_and_derived_auto_scaling_type():
    assert is_gpu_instance_type("ecs.gn6i-c4g1.xlarge")
    assert is_gpu_instance_type("ecs.ebmgn7e.32xlarge")
    assert is_gpu_instance_type("ecs.vgn6i-m4.xlarge")
    assert not is_gpu_instance_type("ecs.g7.xlarge")
    no_spot = NodePoolSpec(
        **{
            **SEED,
            "spot_strategy": "NoSpot",
            "multi_az_policy": "PRIORITY",
            "on_demand_base_capacity": None,
            "on_demand_percentage_above_base_capacity": None,
            "compensate_with_on_demand": None,
        }
    )
    assert no_spot.effective_auto_scaling_type == "gpu"
    assert NodePoolSpec(**SEED).effective_auto_scaling_type == "spot"


def test_taints_accept_the_kubectl_form():
    assert Taint.parse("nvidia.com/gpu=present:NoSchedule") == Taint("nvidia.com/gpu", "present", "NoSchedule")
    body = NodePoolSpec(**{**SEED, "taints": ["dedicated=inference:NoExecute"]}).to_create_body()
    assert body["kubernetes_config"]["taints"] == [{"key": "dedicated", "value": "inference", "effect": "NoExecute"}]


def _as_described(spec: NodePoolSpec) -> dict:
    """What DescribeClusterNodePoolDetail returns for a pool created from ``spec`` (plus server-side fields)."""
    body = spec.to_create_body()
    return {
        "nodepool_info": {**body["nodepool_info"], "nodepool_id": "np" + "0" * 32},
        "auto_scaling": {**body["auto_scaling"], "is_bond_eip": False},
        "scaling_group": {
            **body["scaling_group"],
            "scaling_group_id": "asg-1",
            "data_disks": [],
            "on_demand_base_capacity": "0",
        },
        "kubernetes_config": {**body["kubernetes_config"], "cpu_policy": "none"},
        "status": {"state": "active"},
    }


def test_no_diff_against_the_same_spec():
    spec = NodePoolSpec(**SEED)
    diff = spec.diff(_as_described(spec))
    assert diff.empty and diff.body == {}


def test_diff_modifies_only_what_differs():
    current = _as_described(NodePoolSpec(**SEED))
    wanted = NodePoolSpec(**{**SEED, "max_instances": 20, "labels": {"seldon": "fashion-mnist", "tier": "gpu"}})
    diff = wanted.diff(current)
    assert "auto_scaling.max_instances: 10 -> 20" in diff.changes
    assert diff.body["auto_scaling"]["max_instances"] == 20
    assert "type" not in diff.body["auto_scaling"]
    assert "scaling_group" not in diff.body
    assert {"key": "tier", "value": "gpu"} in diff.body["kubernetes_config"]["labels"]
    assert diff.body["update_nodes"] is True


def test_diff_scaling_group_carries_only_changed_fields():
    current = _as_described(NodePoolSpec(**SEED))
    diff = NodePoolSpec(**{**SEED, "on_demand_percentage_above_base_capacity": 50}).diff(current)
    assert diff.body == {"scaling_group": {"on_demand_percentage_above_base_capacity": 50}}


def test_auto_scaling_type_cannot_change():
    current = _as_described(NodePoolSpec(**SEED))
    with pytest.raises(NodePoolSpecError, match="cannot change it"):
        NodePoolSpec(**{**SEED, "auto_scaling_type": "gpu"}).diff(current)


def test_spec_from_params_names_unknown_keys():
    with pytest.raises(NodePoolSpecError, match="max_nodes"):
        spec_from_params({**SEED, "max_nodes": 3})
    assert spec_from_params(SEED).name == "fashion-mnist-elastic"
