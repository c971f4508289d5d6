"""The HorizontalPodAutoscaler's decision, as kube-controller-manager computes it (pure logic, no I/O).

Follows kubernetes ``pkg/controller/podautoscaler/horizontal.go`` (reconcileAutoscaler,
computeReplicasForMetrics, normalizeDesiredReplicas[WithBehaviors], stabilizeRecommendation[WithBehaviors],
convertDesiredReplicasWithBehaviorRate, calculateScale{Up,Down}Limit*, storeScaleEvent, setConditionInList)
and ``replica_calculator.go`` (GetExternalPerPodMetricReplicas, GetExternalMetricReplicas), with the
defaults of ``pkg/apis/autoscaling/v2/defaults.go`` and the controller flags (sync 15 s, tolerance 0.1,
downscale stabilisation 300 s). Every time here is sandbox ("cloud") seconds, passed in as ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

SYNC_PERIOD_SECONDS = 15.0
TOLERANCE = 0.1
DOWNSCALE_STABILISATION_SECONDS = 300
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


class MetricError(Exception):
    """A metric could not be computed; ``reason`` is the HPA condition/event reason (e.g. FailedGetExternalMetric)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------- quantities
def parse_quantity_milli(value: Any) -> int:
    """A resource.Quantity (``"10"``, ``"500m"``, ``"1.5k"``, ``10``) as milli-units, rounded up like MilliValue()."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, (int, float)):
        return math.ceil(Decimal(str(value)) * 1000)
    text = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, mult = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, mult = text, Decimal(1)
    try:
        return math.ceil(Decimal(number) * mult * 1000)
    except InvalidOperation:
        raise ValueError(
            f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}"
        ) from None


def format_milli_quantity(milli: int) -> str:
    """Canonical DecimalSI string of ``resource.NewMilliQuantity(milli, DecimalSI)``: 45000 -> "45", 5500 -> "5500m"."""
    if milli % 1000:
        return f"{milli}m"
    whole, exp = milli // 1000, 0
    for suffix in ("k", "M", "G", "T", "P", "E"):
        if whole == 0 or whole % 1000:
            break
        whole //= 1000
        exp += 1
        last = suffix
    return f"{whole}{last}" if exp else str(whole)


# --------------------------------------------------------------------------------------------- replica calculator
def external_per_pod_replicas(
    status_replicas: int, target_milli: int, values_milli: list[int], tolerance: float = TOLERANCE
) -> tuple[int, int]:
    """GetExternalPerPodMetricReplicas (AverageValue target): returns (replicas, current averageValue milli).

    The metric total is divided by ``status.replicas`` of the scale target (unready pods included).
    """
    total = sum(values_milli)
    replicas = status_replicas
    if status_replicas <= 0:
        usage_ratio = math.inf if total > 0 else 0.0
    else:
        usage_ratio = total / (target_milli * status_replicas)
    if abs(1.0 - usage_ratio) > tolerance:
        replicas = math.ceil(total / target_milli)
    average = math.ceil(total / status_replicas) if status_replicas > 0 else total
    return replicas, average


def external_value_replicas(
    spec_replicas: int, ready_pods: int, target_milli: int, values_milli: list[int], tolerance: float = TOLERANCE
) -> tuple[int, int]:
    """GetExternalMetricReplicas (Value target): returns (replicas, current value milli)."""
    total = sum(values_milli)
    usage_ratio = total / target_milli
    if spec_replicas == 0:
        return math.ceil(usage_ratio), total
    if abs(1.0 - usage_ratio) <= tolerance:
        return spec_replicas, total
    return math.ceil(usage_ratio * ready_pods), total


# --------------------------------------------------------------------------------------------- behavior
@dataclass(frozen=True)
class Policy:
    type: str  # "Pods" | "Percent"
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    stabilization_window_seconds: int
    select_policy: str  # "Max" | "Min" | "Disabled"
    policies: tuple[Policy, ...]

    @property
    def longest_period(self) -> int:
        return max((p.period_seconds for p in self.policies), default=0)


DEFAULT_SCALE_UP = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
DEFAULT_SCALE_DOWN = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default_behavior(behavior: dict | None) -> dict:
    """The behavior a real cluster hands the controller: every nil field filled with the v2 defaults.

    ``SetDefaults_HorizontalPodAutoscalerBehavior`` fills nil fields; objects read back from a real
    apiserver carry the filled ``behavior`` even when the user gave none (``kubectl get hpa -o yaml``), so
    the controller runs normalizeDesiredReplicasWithBehaviors — which is what makes the worked example
    (QPS 45, target 10, 1 replica) reach 5 in one sync instead of the legacy max(2*current, 4) = 4.
    scaleDown.stabilizationWindowSeconds stays nil (the controller uses its 300 s flag for it).
    """
    out = dict(behavior or {})
    for key, default in (("scaleUp", DEFAULT_SCALE_UP), ("scaleDown", DEFAULT_SCALE_DOWN)):
        rules = dict(out.get(key) or {})
        for fld, val in default.items():
            if rules.get(fld) is None:
                rules[fld] = val if fld != "policies" else [dict(p) for p in val]
        out[key] = rules
    return out


def _rules(raw: dict, default_window: int) -> Rules:
    window = raw.get("stabilizationWindowSeconds")
    return Rules(
        stabilization_window_seconds=int(default_window if window is None else window),
        select_policy=raw.get("selectPolicy") or "Max",
        policies=tuple(Policy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in raw.get("policies") or []),
    )


# --------------------------------------------------------------------------------------------- conditions
def set_condition(
    conditions: list[dict], ctype: str, status: str, reason: str, message: str, now_iso: str
) -> list[dict]:
    """setConditionInList: update in place (lastTransitionTime only moves when the status changes)."""
    for cond in conditions:
        if cond["type"] == ctype:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = now_iso
            cond.update(status=status, reason=reason, message=message)
            return conditions
    conditions.append(
        {"type": ctype, "status": status, "lastTransitionTime": now_iso, "reason": reason, "message": message}
    )
    return conditions


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------- memory
@dataclass
class ScaleEvent:
    change: int
    timestamp: float
    outdated: bool = False


@dataclass
class HpaMemory:
    """What the controller remembers per HPA between syncs (lost on restart, as upstream)."""

    recommendations: list[tuple[int, float]] = field(default_factory=list)
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)

    def record_initial(self, current: int, now: float) -> None:
        if not self.recommendations:
            self.recommendations.append((current, now))

    def _replace_or_append(self, rec: tuple[int, float], obsolete_before: float) -> None:
        for i, (_, ts) in enumerate(self.recommendations):
            if ts < obsolete_before:
                self.recommendations[i] = rec
                return
        self.recommendations.append(rec)

    def store_scale_event(self, behavior: dict | None, prev: int, new: int, now: float) -> None:
        if behavior is None:
            return
        up = new > prev
        rules = _rules(behavior["scaleUp" if up else "scaleDown"], 0)
        events = self.scale_up_events if up else self.scale_down_events
        cutoff = now - rules.longest_period
        for ev in events:
            if ev.timestamp < cutoff:
                ev.outdated = True
        new_event = ScaleEvent(abs(new - prev), now)
        for i, ev in enumerate(events):
            if ev.outdated:
                events[i] = new_event
                return
        events.append(new_event)


def _change_in_period(period_seconds: int, events: list[ScaleEvent], now: float) -> int:
    cutoff = now - period_seconds
    return sum(ev.change for ev in events if ev.timestamp > cutoff)


def scale_up_limit(current: int, events: list[ScaleEvent], rules: Rules, now: float) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    if rules.select_policy == "Disabled":
        return current
    pick = min if rules.select_policy == "Min" else max
    result: int | None = None
    for policy in rules.policies:
        start = current - _change_in_period(policy.period_seconds, events, now)
        if policy.type == "Pods":
            proposed = start + policy.value
        else:
            proposed = math.ceil(start * (1 + policy.value / 100))
        result = proposed if result is None else pick(result, proposed)
    # Upstream starts the fold from 0, which matters only with Min and no policies.
    return result if result is not None else 0


def scale_down_limit(current: int, events: list[ScaleEvent], rules: Rules, now: float) -> int:
    """calculateScaleDownLimitWithBehaviors."""
    if rules.select_policy == "Disabled":
        return current
    pick = max if rules.select_policy == "Min" else min
    result = 2**31 - 1
    for policy in rules.policies:
        start = current + _change_in_period(policy.period_seconds, events, now)
        if policy.type == "Pods":
            proposed = start - policy.value
        else:
            proposed = int(start * (1 - policy.value / 100))
        result = pick(result, proposed)
    return result


# --------------------------------------------------------------------------------------------- normalisation
@dataclass
class Normalized:
    replicas: int
    able_reason: str
    able_message: str
    limited: bool
    limited_reason: str
    limited_message: str


def normalize_without_behavior(
    memory: HpaMemory,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    now: float,
    window: int = DOWNSCALE_STABILISATION_SECONDS,
) -> Normalized:
    """normalizeDesiredReplicas: 5-minute downscale stabilisation, then clamp to [min, min(max, max(2*cur, 4))]."""
    stabilized = desired
    cutoff = now - window
    old_index = None
    for i, (rec, ts) in enumerate(memory.recommendations):
        if ts < cutoff:
            old_index = i
        elif rec > stabilized:
            stabilized = rec
    if old_index is not None:
        memory.recommendations[old_index] = (desired, now)
    else:
        memory.recommendations.append((desired, now))
    if stabilized != desired:
        able = (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    else:
        able = ("ReadyForNewScale", "recommended size matches current size")

    limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if max_replicas > limit:
        maximum, why = (
            limit,
            ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"),
        )
    else:
        maximum, why = (
            max_replicas,
            ("TooManyReplicas", "the desired replica count is more than the maximum replica count"),
        )
    if stabilized < min_replicas:
        final, why = (
            min_replicas,
            ("TooFewReplicas", "the desired replica count is less than the minimum replica count"),
        )
    elif stabilized > maximum:
        final = maximum
    else:
        final, why = stabilized, ("DesiredWithinRange", "the desired count is within the acceptable range")
    return Normalized(final, *able, final != stabilized, *why)


def normalize_with_behavior(
    memory: HpaMemory,
    behavior: dict,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    now: float,
    default_down_window: int = DOWNSCALE_STABILISATION_SECONDS,
) -> Normalized:
    """normalizeDesiredReplicasWithBehaviors: per-direction stabilisation window, then the policy rate limits."""
    up = _rules(behavior["scaleUp"], 0)
    down = _rules(behavior["scaleDown"], default_down_window)
    # stabilizeRecommendationWithBehaviors
    if desired >= current:
        window, better = up.stabilization_window_seconds, min
        able = (
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    else:
        window, better = down.stabilization_window_seconds, max
        able = (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    obsolete = now - max(up.stabilization_window_seconds, down.stabilization_window_seconds)
    cutoff = now - window
    stabilized = desired
    for rec, ts in memory.recommendations:
        if ts > cutoff:
            stabilized = better(rec, stabilized)
    memory._replace_or_append((desired, now), obsolete)
    if stabilized == desired:
        able = ("ReadyForNewScale", "recommended size matches current size")

    # convertDesiredReplicasWithBehaviorRate
    why = ("DesiredWithinRange", "the desired count is within the acceptable range")
    final = stabilized
    if stabilized > current:
        limit = max(scale_up_limit(current, memory.scale_up_events, up, now), current)
        if max_replicas > limit:
            maximum, reason = (
                limit,
                ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"),
            )
        else:
            maximum, reason = (
                max_replicas,
                ("TooManyReplicas", "the desired replica count is more than the maximum replica count"),
            )
        if stabilized > maximum:
            final, why = maximum, reason
    elif stabilized < current:
        limit = min(scale_down_limit(current, memory.scale_down_events, down, now), current)
        if min_replicas < limit:
            minimum, reason = (
                limit,
                ("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"),
            )
        else:
            minimum, reason = (
                min_replicas,
                ("TooFewReplicas", "the desired replica count is less than the minimum replica count"),
            )
        if stabilized < minimum:
            final, why = minimum, reason
    return Normalized(final, *able, final != stabilized, *why)


# --------------------------------------------------------------------------------------------- one metric
@dataclass
class MetricResult:
    replicas: int
    name: str  # "external metric sls_ingress_qps(&LabelSelector{...})" as used in events
    status: dict  # a v2 MetricStatus


def selector_text(selector: dict | None) -> str:
    """A readable rendering of the metric selector, in the spirit of Go's %+v of *LabelSelector."""
    if not selector:
        return "nil"
    labels = ",".join(f"{k}: {v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))
    return (
        f"&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{}},}}"
    )


def external_metric_result(
    spec: dict,
    values_milli: list[int],
    spec_replicas: int,
    status_replicas: int,
    ready_pods: int,
    tolerance: float = TOLERANCE,
) -> MetricResult:
    """computeStatusForExternalMetric for one v2 ``External`` MetricSpec, given the fetched metric values."""
    ext = spec.get("external") or {}
    metric = ext.get("metric") or {}
    target = ext.get("target") or {}
    name = metric.get("name", "")
    label = f"external metric {name}({selector_text(metric.get('selector'))})"
    ident = {"name": name, **({"selector": metric["selector"]} if metric.get("selector") else {})}
    if target.get("averageValue") is not None:
        replicas, avg = external_per_pod_replicas(
            status_replicas, parse_quantity_milli(target["averageValue"]), values_milli, tolerance
        )
        return MetricResult(
            replicas,
            label,
            {
                "type": "External",
                "external": {"metric": ident, "current": {"averageValue": format_milli_quantity(avg)}},
            },
        )
    if target.get("value") is not None:
        replicas, total = external_value_replicas(
            spec_replicas, ready_pods, parse_quantity_milli(target["value"]), values_milli, tolerance
        )
        return MetricResult(
            replicas,
            label,
            {"type": "External", "external": {"metric": ident, "current": {"value": format_milli_quantity(total)}}},
        )
    raise MetricError(
        "FailedGetExternalMetric",
        "invalid external metric source: neither a value target nor an average value target was set",
    )


# --------------------------------------------------------------------------------------------- reconcile
@dataclass
class Decision:
    current_replicas: int
    desired_replicas: int
    rescale: bool
    reason: str
    metric_statuses: list[dict]
    conditions: list[dict]
    events: list[tuple[str, str, str]]  # (type, reason, message)


def decide(
    hpa: dict,
    spec_replicas: int,
    status_replicas: int,
    ready_pods: int,
    metric_outcomes: list[MetricResult | MetricError],
    memory: HpaMemory,
    now: float,
    stamp: str | None = None,
) -> Decision:
    """reconcileAutoscaler after the scale was read: which size to set, the status and conditions to write.

    ``metric_outcomes`` holds, per entry of ``spec.metrics``, the computed result or the error fetching it.
    ``now`` (cloud seconds) drives the windows; ``stamp`` is the wall-clock RFC 3339 time written into
    conditions (kubectl compares it with its own clock), defaulting to ``now`` rendered.
    """
    spec = hpa.get("spec") or {}
    status = hpa.get("status") or {}
    now_iso = stamp or iso(now)
    conditions = [dict(c) for c in status.get("conditions") or []]
    events: list[tuple[str, str, str]] = []
    set_condition(
        conditions,
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now_iso,
    )
    current = spec_replicas
    memory.record_initial(current, now)
    min_replicas = spec.get("minReplicas")
    min_replicas = 1 if min_replicas is None else int(min_replicas)
    max_replicas = int(spec.get("maxReplicas") or 0)
    behavior = default_behavior(spec.get("behavior"))
    metric_statuses: list[dict] = []
    reason = ""
    desired = 0
    rescale = True

    if spec_replicas == 0 and min_replicas != 0:
        desired, rescale = 0, False
        set_condition(
            conditions,
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now_iso,
        )
    elif current > max_replicas:
        reason, desired = "Current number of replicas above Spec.MaxReplicas", max_replicas
    elif current < min_replicas:
        reason, desired = "Current number of replicas below Spec.MinReplicas", min_replicas
    else:
        best: MetricResult | None = None
        errors = [o for o in metric_outcomes if isinstance(o, MetricError)]
        for outcome in metric_outcomes:
            if isinstance(outcome, MetricResult):
                metric_statuses.append(outcome.status)
                if best is None or outcome.replicas > best.replicas:
                    best = outcome
            else:  # upstream leaves a zero MetricStatus here; the sandbox omits it (an empty type is invalid)
                events.append(("Warning", outcome.reason, str(outcome)))
        if best is None:
            first = errors[0] if errors else MetricError("InvalidMetricSourceType", "no metrics specified")
            set_condition(
                conditions,
                "ScalingActive",
                "False",
                first.reason,
                f"the HPA was unable to compute the replica count: {first}",
                now_iso,
            )
            message = f"invalid metrics ({len(errors)} invalid out of {len(metric_outcomes)}), first error is: {first}"
            events.append(("Warning", "FailedComputeMetricsReplicas", message))
            return Decision(
                current,
                int(status.get("desiredReplicas") or 0),
                False,
                "",
                list(status.get("currentMetrics") or []),
                conditions,
                events,
            )
        set_condition(
            conditions,
            "ScalingActive",
            "True",
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {best.name}",
            now_iso,
        )
        desired = best.replicas
        if desired > current:
            reason = f"{best.name} above target"
        elif desired < current:
            reason = "All metrics below target"
        norm = normalize_with_behavior(memory, behavior, current, desired, min_replicas, max_replicas, now)
        set_condition(conditions, "AbleToScale", "True", norm.able_reason, norm.able_message, now_iso)
        set_condition(
            conditions,
            "ScalingLimited",
            "True" if norm.limited else "False",
            norm.limited_reason,
            norm.limited_message,
            now_iso,
        )
        desired = norm.replicas
        rescale = desired != current

    if rescale:
        set_condition(
            conditions,
            "AbleToScale",
            "True",
            "SucceededRescale",
            f"the HPA controller was able to update the target scale to {desired}",
            now_iso,
        )
        events.append(("Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}"))
        memory.store_scale_event(behavior, current, desired, now)
    else:
        desired = current
    return Decision(current, desired, rescale, reason, metric_statuses, conditions, events)
