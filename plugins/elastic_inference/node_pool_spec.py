"""The node pool the user asks for: validation before any cloud call, the create body, and the modify diff.

Field names and ranges follow ``alibabacloud_cs20151215`` 7.2.3 model docstrings
(``models/_create_cluster_node_pool_request.py``; reference §1.3/§1.4). Pure logic, no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from elastic_inference.exceptions import NodePoolSpecError, SpecError
from elastic_inference.specs._base import Kind, coerce

SPOT_STRATEGIES = ("NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo")
MULTI_AZ_POLICIES = ("PRIORITY", "COST_OPTIMIZED", "BALANCE")
AUTO_SCALING_TYPES = ("cpu", "gpu", "gpushare", "spot")
CHARGE_TYPES = ("PostPaid", "PrePaid")
DISK_CATEGORIES = ("cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto", "cloud_essd_entry")
TAINT_EFFECTS = ("NoSchedule", "NoExecute", "PreferNoSchedule")
RUNTIMES = ("containerd", "Sandboxed-Container.runv", "docker")

# ECS GPU families: gn* (gn6i, gn7i, ...), vgn* (vGPU), sgn* (shared), ebmgn* (bare metal GPU).
_GPU_FAMILY = re.compile(r"^ecs\.(?:ebm)?(?:v|s)?gn\d", re.IGNORECASE)
_INSTANCE_TYPE = re.compile(r"^ecs\.[a-z0-9-]+\.[a-z0-9-]+$", re.IGNORECASE)
_POOL_NAME = re.compile(r"^[A-Za-z0-9\u4e00-\u9fa5][A-Za-z0-9_\-\u4e00-\u9fa5]{0,62}$")
_VSWITCH = re.compile(r"^vsw-[a-z0-9]+$")
# Kubernetes label syntax (k8s.io/apimachinery validation: qualified name, label value).
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def is_gpu_instance_type(instance_type: str) -> bool:
    return bool(_GPU_FAMILY.match(instance_type))


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"prefix {prefix!r} must be a DNS subdomain (lowercase, dots, at most 253 chars)"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return "name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
    return None


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    @classmethod
    def parse(cls, item: Any) -> Taint:
        """``{"key","value","effect"}`` or the kubectl form ``key=value:Effect``."""
        if isinstance(item, Taint):
            return item
        if isinstance(item, Mapping):
            return cls(str(item.get("key", "")), str(item.get("value") or ""), str(item.get("effect") or "NoSchedule"))
        if isinstance(item, str):
            kv, _, effect = item.partition(":")
            key, _, value = kv.partition("=")
            return cls(key, value, effect or "NoSchedule")
        raise NodePoolSpecError(f"taints: {item!r} is neither a mapping nor 'key=value:Effect'")

    def to_wire(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}


@dataclass(frozen=True)
class NodePoolSpec:
    """An ACK node pool, as the seed's console form describes it.

    The seed's pool: auto scaling on, preemptible (``spot_strategy="SpotAsPriceGo"``), label
    ``seldon=fashion-mnist``, ``multi_az_policy="COST_OPTIMIZED"`` with
    ``on_demand_percentage_above_base_capacity=30`` and ``compensate_with_on_demand=True``.
    """

    name: str
    instance_types: Sequence[str]
    vswitch_ids: Sequence[str]
    min_instances: int = 0
    max_instances: int = 10
    enable_auto_scaling: bool = True
    auto_scaling_type: str | None = None  # derived: spot > gpu > cpu
    instance_charge_type: str = "PostPaid"
    spot_strategy: str = "NoSpot"
    spot_price_limit: Mapping[str, float | str] = field(default_factory=dict)
    spot_instance_pools: int | None = None
    spot_instance_remedy: bool | None = None
    multi_az_policy: str = "PRIORITY"
    on_demand_base_capacity: int | None = None
    on_demand_percentage_above_base_capacity: int | None = None
    compensate_with_on_demand: bool | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Any] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    system_disk_category: str = "cloud_essd"
    system_disk_size: int = 120
    runtime: str = "containerd"
    image_type: str | None = None
    security_group_ids: Sequence[str] = ()
    nodepool_type: str = "ess"

    # -- derived ----------------------------------------------------------------------------------------------
    @property
    def has_gpu(self) -> bool:
        return any(is_gpu_instance_type(t) for t in self.instance_types)

    @property
    def is_spot(self) -> bool:
        return self.spot_strategy != "NoSpot"

    @property
    def effective_auto_scaling_type(self) -> str:
        if self.auto_scaling_type:
            return self.auto_scaling_type
        return "spot" if self.is_spot else ("gpu" if self.has_gpu else "cpu")

    @property
    def parsed_taints(self) -> list[Taint]:
        return [Taint.parse(t) for t in self.taints]

    # -- validation -------------------------------------------------------------------------------------------
    def problems(self, *, cluster_vswitches: bool = False) -> list[str]:
        """Every problem with the spec, each naming the field and the fix (empty when valid).

        ``cluster_vswitches``: empty ``vswitch_ids`` are fine (the operator then uses the cluster's own)."""
        p: list[str] = []
        if not isinstance(self.name, str) or not _POOL_NAME.match(self.name or ""):
            p.append(f"name={self.name!r}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit")
        types = list(self.instance_types or [])
        if isinstance(self.instance_types, str) or not 1 <= len(types) <= 10:
            p.append("instance_types: give a list of 1 to 10 ECS instance types, e.g. ['ecs.gn6i-c4g1.xlarge']")
        else:
            bad = [t for t in types if not isinstance(t, str) or not _INSTANCE_TYPE.match(t)]
            if bad:
                p.append(f"instance_types: {bad} are not ECS instance types (form 'ecs.<family>.<size>')")
            if len(set(types)) != len(types):
                p.append("instance_types: remove the duplicates")
        vsw = list(self.vswitch_ids or [])
        if cluster_vswitches and not vsw and not isinstance(self.vswitch_ids, str):
            pass
        elif isinstance(self.vswitch_ids, str) or not 1 <= len(vsw) <= 8:
            p.append("vswitch_ids: give a list of 1 to 8 vSwitch ids (one per zone for multi-zone scaling)")
        else:
            bad = [v for v in vsw if not isinstance(v, str) or not _VSWITCH.match(v)]
            if bad:
                p.append(f"vswitch_ids: {bad} are not vSwitch ids (form 'vsw-<id>')")
        if not isinstance(self.min_instances, int) or not isinstance(self.max_instances, int):
            p.append("min_instances/max_instances: must be integers")
        else:
            if not 0 <= self.max_instances <= 2000:
                p.append(f"max_instances={self.max_instances}: must be between 0 and 2000")
            if not 0 <= self.min_instances <= self.max_instances:
                p.append(
                    f"min_instances={self.min_instances}: must be between 0 and max_instances ({self.max_instances})"
                )
        if self.auto_scaling_type is not None and self.auto_scaling_type not in AUTO_SCALING_TYPES:
            p.append(f"auto_scaling_type={self.auto_scaling_type!r}: use one of {AUTO_SCALING_TYPES}")
        if self.auto_scaling_type in ("gpu", "gpushare") and types and not self.has_gpu:
            p.append(
                f"auto_scaling_type={self.auto_scaling_type!r} but no GPU instance type in instance_types "
                "(gn*/vgn*/sgn*/ebmgn* families): add one or use 'cpu'"
            )
        if self.instance_charge_type not in CHARGE_TYPES:
            p.append(f"instance_charge_type={self.instance_charge_type!r}: use one of {CHARGE_TYPES}")
        if self.spot_strategy not in SPOT_STRATEGIES:
            p.append(f"spot_strategy={self.spot_strategy!r}: use one of {SPOT_STRATEGIES}")
        if self.is_spot and self.instance_charge_type != "PostPaid":
            p.append("instance_charge_type: preemptible (spot) instances are pay-as-you-go, set 'PostPaid'")
        p.extend(self._spot_price_problems(types))
        if self.spot_instance_pools is not None and not 1 <= self.spot_instance_pools <= 10:
            p.append(f"spot_instance_pools={self.spot_instance_pools}: must be between 1 and 10")
        if self.multi_az_policy not in MULTI_AZ_POLICIES:
            p.append(f"multi_az_policy={self.multi_az_policy!r}: use one of {MULTI_AZ_POLICIES}")
        p.extend(self._cost_optimization_problems())
        for key, value in dict(self.labels or {}).items():
            problem = _label_key_problem(str(key))
            if problem:
                p.append(f"labels[{key!r}]: label key {problem}")
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                p.append(f"labels[{key!r}]={value!r}: value must be at most 63 alphanumerics, '-', '_' or '.'")
        try:
            taints = self.parsed_taints
        except NodePoolSpecError as e:
            p.append(str(e))
            taints = []
        for t in taints:
            problem = _label_key_problem(t.key) if t.key else "must not be empty"
            if problem:
                p.append(f"taints[{t.key!r}]: taint key {problem}")
            if t.effect not in TAINT_EFFECTS:
                p.append(f"taints[{t.key!r}]: effect {t.effect!r} must be one of {TAINT_EFFECTS}")
        if self.system_disk_category not in DISK_CATEGORIES:
            p.append(f"system_disk_category={self.system_disk_category!r}: use one of {DISK_CATEGORIES}")
        if not isinstance(self.system_disk_size, int) or not 20 <= self.system_disk_size <= 2048:
            p.append(f"system_disk_size={self.system_disk_size!r}: must be 20 to 2048 GiB")
        if self.runtime not in RUNTIMES:
            p.append(f"runtime={self.runtime!r}: use one of {RUNTIMES}")
        if len(dict(self.tags or {})) > 20:
            p.append("tags: at most 20 ECS tags")
        return p

    def _spot_price_problems(self, types: list[str]) -> list[str]:
        p: list[str] = []
        limits = dict(self.spot_price_limit or {})
        if self.spot_strategy == "SpotWithPriceLimit":
            if not limits:
                p.append(
                    "spot_price_limit: required with spot_strategy='SpotWithPriceLimit' - give "
                    "{instance_type: max hourly price}, or use spot_strategy='SpotAsPriceGo'"
                )
            missing = [t for t in types if t not in limits]
            if limits and missing:
                p.append(f"spot_price_limit: no price for {missing}; every instance type needs a limit")
        elif limits:
            p.append(
                f"spot_price_limit: only used with spot_strategy='SpotWithPriceLimit' (is {self.spot_strategy!r});"
                " remove it or change the strategy"
            )
        for itype, price in limits.items():
            if itype not in types:
                p.append(f"spot_price_limit[{itype!r}]: not one of instance_types")
            try:
                if float(price) <= 0:
                    raise ValueError
            except (TypeError, ValueError):
                p.append(f"spot_price_limit[{itype!r}]={price!r}: must be a positive price per hour")
        return p

    def _cost_optimization_problems(self) -> list[str]:
        p: list[str] = []
        cost_fields = {
            "on_demand_base_capacity": self.on_demand_base_capacity,
            "on_demand_percentage_above_base_capacity": self.on_demand_percentage_above_base_capacity,
            "compensate_with_on_demand": self.compensate_with_on_demand,
        }
        if self.multi_az_policy != "COST_OPTIMIZED":
            used = [k for k, v in cost_fields.items() if v is not None]
            if used:
                p.append(
                    f"{', '.join(used)}: only apply with multi_az_policy='COST_OPTIMIZED' "
                    f"(is {self.multi_az_policy!r}); set the policy or remove them"
                )
            return p
        base, pct = self.on_demand_base_capacity, self.on_demand_percentage_above_base_capacity
        if base is not None and (not isinstance(base, int) or not 0 <= base <= 1000):
            p.append(f"on_demand_base_capacity={base!r}: must be an integer 0 to 1000")
        if pct is not None and (not isinstance(pct, int) or not 0 <= pct <= 100):
            p.append(
                f"on_demand_percentage_above_base_capacity={pct!r}: must be an integer percentage 0 to 100"
                " (30 for the seed's 30 % pay-as-you-go)"
            )
        if not self.is_spot and pct not in (None, 100):
            p.append(
                "on_demand_percentage_above_base_capacity: below 100 needs preemptible instances - set "
                "spot_strategy to 'SpotAsPriceGo' or 'SpotWithPriceLimit'"
            )
        return p

    def validate(self, *, cluster_vswitches: bool = False) -> NodePoolSpec:
        problems = self.problems(cluster_vswitches=cluster_vswitches)
        if problems:
            raise NodePoolSpecError(
                f"node pool {self.name!r} spec is invalid:\n  - " + "\n  - ".join(problems), problems=problems
            )
        return self

    # -- run spec: from rendered values, to XCom ---------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | str | None = None, **overrides: Any) -> NodePoolSpec:
        """Build from a mapping (the ``node_pool`` param, operator kwargs) or its rendered JSON/Python-literal
        text, naming unknown keys; rendered values are coerced by :func:`elastic_inference.specs.coerce`."""
        try:
            mapping: Mapping[str, Any] = (
                coerce(values, "object", "node_pool") if isinstance(values, str) else (values or {})
            )
        except SpecError as e:
            raise NodePoolSpecError(str(e), problems=e.problems) from None
        given = {**mapping, **overrides}
        known = {f.name for f in dataclasses.fields(cls)}
        problems = []
        unknown = sorted(set(given) - known)
        if unknown:
            problems.append(f"unknown node pool parameter(s) {unknown}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for name, value in given.items():
            if name not in known:
                continue
            kind = _FIELD_KINDS.get(name)
            try:
                kwargs[name] = (
                    value
                    if kind is None
                    else coerce(value, kind, f"node_pool.{name}", optional=name in _OPTIONAL_FIELDS)
                )
            except SpecError as e:
                problems.extend(e.problems)
        missing = [n for n in ("name", "instance_types") if n not in kwargs and n not in unknown]
        if missing and not problems:
            problems.append(f"node_pool: {missing} required")
        if problems:
            raise NodePoolSpecError("node pool spec: " + "; ".join(problems), problems=problems)
        kwargs.setdefault("vswitch_ids", [])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (XCom); ``from_mapping(to_dict())`` gives the spec back."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("instance_types", "vswitch_ids", "taints", "security_group_ids"):
            out[key] = list(out[key])
        for key in ("labels", "tags", "spot_price_limit"):
            out[key] = dict(out[key])
        return out

    # -- wire -------------------------------------------------------------------------------------------------
    def _auto_scaling(self) -> dict[str, Any]:
        return {
            "enable": self.enable_auto_scaling,
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "type": self.effective_auto_scaling_type,
        }

    def _scaling_group(self) -> dict[str, Any]:
        sg: dict[str, Any] = {
            "instance_types": list(self.instance_types),
            "vswitch_ids": list(self.vswitch_ids),
            "instance_charge_type": self.instance_charge_type,
            "spot_strategy": self.spot_strategy,
            "multi_az_policy": self.multi_az_policy,
            "system_disk_category": self.system_disk_category,
            "system_disk_size": self.system_disk_size,
        }
        if self.spot_price_limit:
            sg["spot_price_limit"] = [
                {"instance_type": t, "price_limit": str(p)} for t, p in self.spot_price_limit.items()
            ]
        optional = {
            "spot_instance_pools": self.spot_instance_pools,
            "spot_instance_remedy": self.spot_instance_remedy,
            "on_demand_base_capacity": self.on_demand_base_capacity,
            "on_demand_percentage_above_base_capacity": self.on_demand_percentage_above_base_capacity,
            "compensate_with_on_demand": self.compensate_with_on_demand,
            "image_type": self.image_type,
        }
        sg.update({k: v for k, v in optional.items() if v is not None})
        if self.tags:
            sg["tags"] = [{"key": k, "value": v} for k, v in self.tags.items()]
        if self.security_group_ids:
            sg["security_group_ids"] = list(self.security_group_ids)
        return sg

    def _kubernetes_config(self) -> dict[str, Any]:
        return {
            "labels": [{"key": k, "value": v} for k, v in self.labels.items()],
            "taints": [t.to_wire() for t in self.parsed_taints],
            "runtime": self.runtime,
        }

    def to_create_body(self) -> dict[str, Any]:
        """The CreateClusterNodePool body (validates first)."""
        self.validate()
        return {
            "nodepool_info": {"name": self.name, "type": self.nodepool_type},
            "auto_scaling": self._auto_scaling(),
            "scaling_group": self._scaling_group(),
            "kubernetes_config": self._kubernetes_config(),
        }

    def diff(self, current: Mapping[str, Any]) -> NodePoolDiff:
        """What ModifyClusterNodePool must change to turn ``current`` (a DescribeClusterNodePoolDetail body)
        into this spec. Fields the request does not set are left alone."""
        self.validate()
        changes: list[str] = []
        body: dict[str, Any] = {}

        cur_as = dict(current.get("auto_scaling") or {})
        want_as = self._auto_scaling()
        cur_type = cur_as.get("type")
        if cur_type and cur_type != want_as["type"]:
            raise NodePoolSpecError(
                f"auto_scaling_type: the existing pool {self.name!r} is {cur_type!r} and ACK cannot change it "
                f"after creation (requested {want_as['type']!r}); pass auto_scaling_type={cur_type!r} or delete "
                "the pool and let the operator create it again"
            )
        as_changes = _changed_fields("auto_scaling", cur_as, {k: v for k, v in want_as.items() if k != "type"})
        if as_changes:
            changes += as_changes
            body["auto_scaling"] = {k: v for k, v in want_as.items() if k != "type"}

        cur_sg = dict(current.get("scaling_group") or {})
        want_sg = self._scaling_group()
        sg_changes = _changed_fields("scaling_group", cur_sg, want_sg)
        if sg_changes:
            changes += sg_changes
            differing = {line.split(":")[0].split(".", 1)[1] for line in sg_changes}
            body["scaling_group"] = {k: v for k, v in want_sg.items() if k in differing}

        cur_kc = dict(current.get("kubernetes_config") or {})
        want_kc = self._kubernetes_config()
        kc_changes = _changed_fields("kubernetes_config", cur_kc, want_kc)
        if kc_changes:
            changes += kc_changes
            body["kubernetes_config"] = want_kc  # labels and taints are replaced as whole lists
            body["update_nodes"] = True  # apply new labels/taints to the pool's existing nodes too
        return NodePoolDiff(changes=changes, body=body)


@dataclass(frozen=True)
class NodePoolDiff:
    changes: list[str]  # human-readable "section.field: current -> wanted"
    body: dict[str, Any]  # ModifyClusterNodePool body; empty when nothing differs

    @property
    def empty(self) -> bool:
        return not self.changes


def _normalize(key: str, value: Any) -> Any:
    """Bring a wire value and a requested value to one comparable form."""
    if value is None:
        return None
    if key in ("labels", "tags"):
        return {str(i.get("key")): str(i.get("value") or "") for i in value or []}
    if key == "taints":
        return sorted(
            (str(i.get("key")), str(i.get("value") or ""), str(i.get("effect") or "NoSchedule")) for i in value or []
        )
    if key == "spot_price_limit":
        return {str(i.get("instance_type")): float(i.get("price_limit")) for i in value or []}
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return value


def _changed_fields(section: str, current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    out = []
    for key, want in wanted.items():
        have = current.get(key)
        empty_list = key in ("labels", "tags", "taints", "spot_price_limit", "security_group_ids")
        if empty_list and have is None:
            have = []
        if _normalize(key, have) != _normalize(key, want):
            out.append(f"{section}.{key}: {have!r} -> {want!r}")
    return out


def spec_from_params(params: Mapping[str, Any]) -> NodePoolSpec:
    """Build a spec from a plain mapping (operator kwargs, DAG Params), naming unknown keys."""
    return NodePoolSpec.from_mapping(params)


# How rendered values are coerced (fields not listed - taints, spot_price_limit values - are taken as given).
_FIELD_KINDS: dict[str, Kind] = {
    "name": "string",
    "instance_types": "array",
    "vswitch_ids": "array",
    "min_instances": "integer",
    "max_instances": "integer",
    "enable_auto_scaling": "boolean",
    "auto_scaling_type": "string",
    "instance_charge_type": "string",
    "spot_strategy": "string",
    "spot_price_limit": "object",
    "spot_instance_pools": "integer",
    "spot_instance_remedy": "boolean",
    "multi_az_policy": "string",
    "on_demand_base_capacity": "integer",
    "on_demand_percentage_above_base_capacity": "integer",
    "compensate_with_on_demand": "boolean",
    "labels": "object",
    "taints": "array",
    "tags": "object",
    "system_disk_category": "string",
    "system_disk_size": "integer",
    "runtime": "string",
    "image_type": "string",
    "security_group_ids": "array",
    "nodepool_type": "string",
}
_OPTIONAL_FIELDS = frozenset(
    {
        "auto_scaling_type",
        "spot_instance_pools",
        "spot_instance_remedy",
        "on_demand_base_capacity",
        "on_demand_percentage_above_base_capacity",
        "compensate_with_on_demand",
        "image_type",
    }
)

# The DAG's ``node_pool`` param: the seed's pool, and the schema of the keys the trigger form shows. No
# ``required``: a part is accepted and the left-out keys keep these defaults (merged in ``plan``).
SEED_NODE_POOL: dict[str, Any] = {
    "name": "fashion-mnist-elastic",
    "instance_types": ["ecs.gn6i-c4g1.xlarge"],
    "vswitch_ids": [],
    "min_instances": 0,
    "max_instances": 10,
    "spot_strategy": "SpotAsPriceGo",
    "on_demand_base_capacity": 0,
    "on_demand_percentage_above_base_capacity": 30,
    "compensate_with_on_demand": True,
    "multi_az_policy": "COST_OPTIMIZED",
    "labels": {"seldon": "fashion-mnist"},
    "taints": [],
}
NODE_POOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 63},
        "instance_types": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^ecs\."},
            "minItems": 1,
            "maxItems": 10,
        },
        "vswitch_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "min_instances": {"type": "integer", "minimum": 0},
        "max_instances": {"type": "integer", "minimum": 1, "maximum": 2000},
        "spot_strategy": {"enum": list(SPOT_STRATEGIES)},
        "on_demand_base_capacity": {"type": "integer", "minimum": 0, "maximum": 1000},
        "on_demand_percentage_above_base_capacity": {"type": "integer", "minimum": 0, "maximum": 100},
        "compensate_with_on_demand": {"type": "boolean"},
        "multi_az_policy": {"enum": list(MULTI_AZ_POLICIES)},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "taints": {"type": "array"},
    },
    "additionalProperties": False,  # a typo is refused by the trigger form, not silently kept
}
# Every other spec field is accepted as well (its checks are NodePoolSpec.problems()).
NODE_POOL_SCHEMA["properties"].update(
    {f: {} for f in NodePoolSpec.__dataclass_fields__ if f not in NODE_POOL_SCHEMA["properties"]}
)
