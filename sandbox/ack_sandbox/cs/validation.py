"""Request-body checks for CreateClusterNodePool / ModifyClusterNodePool, with the field named in the error.

Ranges and enums are the ones documented in the SDK models
(``alibabacloud_cs20151215/models/_create_cluster_node_pool_request.py``, reference §1.4).
"""

from __future__ import annotations

from typing import Any

from ack_sandbox.cs.catalogue import CATALOGUE
from ack_sandbox.cs.errors import CsError, invalid

POOL_TYPES = {"ess", "edge", "lingjun", "hybrid"}
AUTO_SCALING_TYPES = {"cpu", "gpu", "gpushare", "spot"}
CHARGE_TYPES = {"PrePaid", "PostPaid"}
SPOT_STRATEGIES = {"NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo"}
MULTI_AZ = {"PRIORITY", "COST_OPTIMIZED", "BALANCE"}
DISK_CATEGORIES = {"cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto", "cloud_essd_entry"}
TAINT_EFFECTS = {"NoSchedule", "NoExecute", "PreferNoSchedule"}
RUNTIMES = {"containerd", "Sandboxed-Container.runv", "docker"}
SCALING_POLICIES = {"release", "recycle"}


def _int(section: dict[str, Any], key: str, path: str, lo: int, hi: int) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{path}.{key}", f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise invalid(f"{path}.{key}", f"must be between {lo} and {hi}, got {value}")
    return value


def _enum(section: dict[str, Any], key: str, path: str, allowed: set[str]) -> None:
    value = section.get(key)
    if value is not None and value not in allowed:
        raise invalid(f"{path}.{key}", f"must be one of {', '.join(sorted(allowed))}, got {value!r}")


def _dict(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(key, "must be an object")
    return value


def check_name(name: Any, field: str = "nodepool_info.name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise invalid(field, "is required: give the node pool a name (1-63 characters)", "InvalidParameter.Name")
    if len(name) > 63:
        raise invalid(field, f"must be at most 63 characters, got {len(name)}", "InvalidParameter.Name")
    return name


def check_auto_scaling(auto: dict[str, Any], *, creating: bool) -> None:
    _int(auto, "min_instances", "auto_scaling", 0, 2000)
    _int(auto, "max_instances", "auto_scaling", 0, 2000)
    _enum(auto, "type", "auto_scaling", AUTO_SCALING_TYPES)
    if auto.get("enable"):
        lo, hi = auto.get("min_instances") or 0, auto.get("max_instances")
        if hi is None and creating:
            raise invalid("auto_scaling.max_instances", "is required when auto_scaling.enable is true")
        if hi is not None and lo > hi:
            raise invalid("auto_scaling.min_instances", f"must not exceed auto_scaling.max_instances ({lo} > {hi})")


def check_scaling_group(sg: dict[str, Any], cluster_vswitches: set[str], *, creating: bool, autoscaling: bool) -> None:
    vsw = sg.get("vswitch_ids")
    if creating or vsw is not None:
        if not isinstance(vsw, list) or not vsw:
            raise invalid("scaling_group.vswitch_ids", "is required: give 1-8 vSwitch ids of the cluster's VPC")
        if len(vsw) > 8:
            raise invalid("scaling_group.vswitch_ids", f"at most 8 vSwitches, got {len(vsw)}")
        unknown = [v for v in vsw if v not in cluster_vswitches]
        if unknown:
            raise invalid(
                "scaling_group.vswitch_ids",
                f"{', '.join(map(str, unknown))} not found in the cluster's VPC "
                f"(DescribeClusterDetail lists vswitch_ids {', '.join(sorted(cluster_vswitches))})",
                "InvalidVSwitchId.NotFound",
            )
    types = sg.get("instance_types")
    if creating or types is not None:
        if not isinstance(types, list) or not types:
            raise invalid("scaling_group.instance_types", "is required: give 1-10 ECS instance types")
        if len(types) > 10:
            raise invalid("scaling_group.instance_types", f"at most 10 instance types, got {len(types)}")
        unknown = [t for t in types if t not in CATALOGUE]
        if unknown:
            raise invalid(
                "scaling_group.instance_types",
                f"{', '.join(map(str, unknown))} not available in this region "
                f"(available: {', '.join(sorted(CATALOGUE))})",
                "InvalidInstanceType.NotSupported",
            )
    _enum(sg, "instance_charge_type", "scaling_group", CHARGE_TYPES)
    _enum(sg, "spot_strategy", "scaling_group", SPOT_STRATEGIES)
    _enum(sg, "multi_az_policy", "scaling_group", MULTI_AZ)
    _enum(sg, "system_disk_category", "scaling_group", DISK_CATEGORIES)
    _enum(sg, "scaling_policy", "scaling_group", SCALING_POLICIES)
    _int(sg, "on_demand_base_capacity", "scaling_group", 0, 1000)
    _int(sg, "on_demand_percentage_above_base_capacity", "scaling_group", 0, 100)
    _int(sg, "spot_instance_pools", "scaling_group", 1, 10)
    _int(sg, "system_disk_size", "scaling_group", 20, 2048)
    desired = _int(sg, "desired_size", "scaling_group", 0, 2000)
    if autoscaling and desired:
        raise invalid(
            "scaling_group.desired_size",
            "must not be set when auto_scaling.enable is true (use auto_scaling.min_instances)",
        )
    if (
        sg.get("spot_strategy") in ("SpotAsPriceGo", "SpotWithPriceLimit")
        and sg.get("instance_charge_type", "PostPaid") != "PostPaid"
    ):
        raise invalid("scaling_group.instance_charge_type", "spot instances must be PostPaid")
    for i, item in enumerate(sg.get("spot_price_limit") or []):
        if not isinstance(item, dict) or item.get("instance_type") not in (types or sg.get("instance_types") or []):
            raise invalid(
                f"scaling_group.spot_price_limit[{i}].instance_type", "must be one of scaling_group.instance_types"
            )
        try:
            float(item.get("price_limit"))
        except (TypeError, ValueError):
            raise invalid(
                f"scaling_group.spot_price_limit[{i}].price_limit",
                f"must be a decimal price, got {item.get('price_limit')!r}",
            ) from None
    if sg.get("spot_strategy") == "SpotWithPriceLimit" and not sg.get("spot_price_limit"):
        raise invalid("scaling_group.spot_price_limit", "is required when spot_strategy is SpotWithPriceLimit")


def check_kubernetes_config(kc: dict[str, Any]) -> None:
    _enum(kc, "runtime", "kubernetes_config", RUNTIMES)
    for i, label in enumerate(kc.get("labels") or []):
        if not isinstance(label, dict) or not label.get("key"):
            raise invalid(f"kubernetes_config.labels[{i}].key", "is required")
    for i, taint in enumerate(kc.get("taints") or []):
        if not isinstance(taint, dict) or not taint.get("key"):
            raise invalid(f"kubernetes_config.taints[{i}].key", "is required")
        if taint.get("effect", "NoSchedule") not in TAINT_EFFECTS:
            raise invalid(
                f"kubernetes_config.taints[{i}].effect",
                f"must be one of {', '.join(sorted(TAINT_EFFECTS))}, got {taint.get('effect')!r}",
            )


def check_create(body: dict[str, Any], cluster_vswitches: set[str]) -> None:
    if not isinstance(body, dict):
        raise CsError(400, "InvalidParameter", "The request body must be a JSON object.")
    info = _dict(body, "nodepool_info")
    check_name(info.get("name"))
    _enum(info, "type", "nodepool_info", POOL_TYPES)
    auto = _dict(body, "auto_scaling")
    check_auto_scaling(auto, creating=True)
    if "scaling_group" not in body:
        raise invalid("scaling_group", "is required (vswitch_ids, instance_types, ...)")
    check_scaling_group(
        _dict(body, "scaling_group"), cluster_vswitches, creating=True, autoscaling=bool(auto.get("enable"))
    )
    check_kubernetes_config(_dict(body, "kubernetes_config"))


def check_modify(body: dict[str, Any], current: dict[str, Any], cluster_vswitches: set[str]) -> None:
    if not isinstance(body, dict):
        raise CsError(400, "InvalidParameter", "The request body must be a JSON object.")
    info = _dict(body, "nodepool_info")
    if "name" in info:
        check_name(info.get("name"))
    auto = _dict(body, "auto_scaling")
    cur_auto = current.get("auto_scaling", {})
    if auto.get("type") is not None and auto["type"] != cur_auto.get("type", "cpu"):
        raise invalid("auto_scaling.type", f"cannot be modified after creation (is {cur_auto.get('type', 'cpu')!r})")
    merged_auto = {**cur_auto, **{k: v for k, v in auto.items() if v is not None}}
    check_auto_scaling(merged_auto, creating=False)
    check_scaling_group(
        _dict(body, "scaling_group"), cluster_vswitches, creating=False, autoscaling=bool(merged_auto.get("enable"))
    )
    check_kubernetes_config(_dict(body, "kubernetes_config"))
