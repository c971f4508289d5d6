"""Scale verification: pure checks over a recorded timeline (see ``timeline.py`` for its format).

Each check returns a :class:`Check` with a message a person can act on. The checks:

1. ``replicas`` - peak replicas vs the HPA formula for an AverageValue external metric
   (``desired = ceil(metric / target)``, kubernetes ``replica_calculator.go``
   ``GetExternalPerPodMetricReplicas``), clamped to ``[minReplicas, maxReplicas]``, within a tolerance;
   a load that needs more than ``maxReplicas`` fails and says the cap is the cause.
2. ``placement`` - pods that appeared during the load ran on nodes of the elastic pool.
3. ``spot_mix`` - pay-as-you-go vs spot nodes of the pool at its peak vs the pool's policy:
   ``payg = base + ceil(pct/100 x (N - base))`` (the sandbox's explicit rule for ESS COST_OPTIMIZED,
   ``ack_sandbox/cs/mix.py: payg_target``), within one node (ESS does not document the rounding).
4. ``failures_during_scale_out`` - requests that failed between the first scale-out decision and the
   moment all new replicas were ready, from locust's per-second history.
5. ``scale_in`` (optional) - replicas back at ``minReplicas`` within ``scale_in_timeout`` after the load.

Facts beside the checks (never a verdict): the pool's scale-in after the load (:func:`pool_scale_in`: nodes
before, at the peak and at the end, how long after the load it was back) and how long a new node took to
become Ready (:func:`node_provisioning`), which the report states and, on the sandbox, scales to ACK's times.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from elastic_inference.timeline import CHARGE_PAYG, CHARGE_SPOT, pool_node_count, replicas_of

NO_SPOT = "NoSpot"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    expected: Any
    observed: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PoolPolicy:
    """The node pool's charge policy (its ``scaling_group`` fields)."""

    spot_strategy: str = NO_SPOT
    on_demand_base_capacity: int = 0
    on_demand_percentage_above_base_capacity: int = 100

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PoolPolicy | None:
        if not data:
            return None
        src = data.get("scaling_group", data)
        return cls(
            spot_strategy=str(src.get("spot_strategy", NO_SPOT)),
            on_demand_base_capacity=int(src.get("on_demand_base_capacity", 0) or 0),
            on_demand_percentage_above_base_capacity=int(
                src.get("on_demand_percentage_above_base_capacity", 100)
                if src.get("on_demand_percentage_above_base_capacity") is not None
                else 100
            ),
        )

    def payg_nodes(self, total: int) -> int:
        """Pay-as-you-go nodes a pool of ``total`` should hold (mirrors ``ack_sandbox.cs.mix.payg_target``)."""
        if self.spot_strategy == NO_SPOT or total <= self.on_demand_base_capacity:
            return total
        base = self.on_demand_base_capacity
        return base + math.ceil(self.on_demand_percentage_above_base_capacity * (total - base) / 100)

    def describe(self) -> str:
        if self.spot_strategy == NO_SPOT:
            return "all pay-as-you-go (NoSpot)"
        return (
            f"{self.on_demand_base_capacity} pay-as-you-go base + "
            f"{self.on_demand_percentage_above_base_capacity}% pay-as-you-go above base, the rest spot"
        )


@dataclass(frozen=True)
class VerifyOptions:
    replica_tolerance: int = 1
    mix_tolerance: int = 1
    failure_budget: int = 0
    check_scale_in: bool = True
    scale_in_timeout: float | None = None  # None: the load test's own scale_in_timeout
    metric_lag: float = 0.0  # seconds the QPS metric trails the offered load
    hpa_tolerance: float = 0.1  # the HPA's own tolerance (kube-controller-manager default)
    pool_policy: PoolPolicy | None = None
    min_agreement: float | None = None  # predictions agreeing with the labels (None: no check)


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def failure_message(self) -> str:
        bad = self.failures()
        lines = [f"Scale verification failed ({len(bad)} of {len(self.checks)} checks):"]
        lines += [f"- {c.name}: {c.message}" for c in bad]
        return "\n".join(lines)


# -- helpers --------------------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return str(int(x)) if float(x).is_integer() else f"{x:.{digits}f}"


def _load_times(timeline: dict[str, Any]) -> tuple[float, float, float]:
    load = timeline.get("load") or {}
    samples = timeline.get("samples") or []
    start = load.get("start", samples[0]["t"] if samples else 0.0)
    stop = load.get("stop", samples[-1]["t"] if samples else start)
    hold = load.get("hold_start", start)
    return float(start), float(hold), float(stop)


def _rel(t: float, start: float) -> str:
    return f"t+{t - start:.0f}s"


def baseline_sample(timeline: dict[str, Any]) -> dict[str, Any] | None:
    """The last sample taken before the load started (the first sample when none was)."""
    samples = timeline.get("samples") or []
    start, _, _ = _load_times(timeline)
    before = [s for s in samples if s["t"] < start]
    return before[-1] if before else (samples[0] if samples else None)


def qps_plateau(timeline: dict[str, Any], metric_lag: float = 0.0) -> tuple[float | None, str]:
    """The load the HPA saw on the plateau: the mean external metric during the hold phase (shifted by
    ``metric_lag``); the median locust RPS of the hold phase when the metric was never read.

    The mean, not the median: the metric is a short-window request count truncated to an integer, so a
    steady rate reads as two alternating values (e.g. 28 and 42 for 35 RPS) whose median is either one."""
    start, hold, stop = _load_times(timeline)
    lo, hi = hold + metric_lag, stop + metric_lag
    values = [s["qps"] for s in timeline.get("samples") or [] if s.get("qps") is not None and lo <= s["t"] <= hi]
    metric = ((timeline.get("meta") or {}).get("metric") or {}).get("name") or "external metric"
    if values:
        return float(statistics.fmean(values)), f"mean {metric} over the hold phase ({len(values)} samples)"
    history = ((timeline.get("locust") or {}).get("history")) or []
    rps = [h["rps"] for h in history if h.get("t") is not None and hold <= h["t"] <= stop]
    if rps:
        return float(statistics.median(rps)), "median locust RPS over the hold phase (the metric was never read)"
    return None, "no metric and no locust history"


def _peak(timeline: dict[str, Any]) -> tuple[int | None, dict[str, Any] | None]:
    best, best_s = None, None
    for s in timeline.get("samples") or []:
        r = replicas_of(s)
        if r is not None and (best is None or r > best):
            best, best_s = r, s
    return best, best_s


def _hpa_notes(samples: list[dict[str, Any]]) -> str:
    """HPA conditions worth telling a person (the last sample's False or limiting ones)."""
    for s in reversed(samples):
        conds = (s.get("hpa") or {}).get("conditions") or []
        if conds:
            notes = [
                f"{c['type']}={c['status']} {c.get('reason') or ''}: {c.get('message') or ''}".strip()
                for c in conds
                if c.get("status") == "False" or c.get("type") == "ScalingLimited" and c.get("status") == "True"
            ]
            return ("; HPA conditions: " + " | ".join(notes)) if notes else ""
    return ""


# -- checks ---------------------------------------------------------------------------------------------
def check_replicas(timeline: dict[str, Any], opts: VerifyOptions) -> Check:
    hpa = (timeline.get("meta") or {}).get("hpa")
    deployment = (timeline.get("meta") or {}).get("deployment")
    if not hpa:
        return Check(
            "replicas",
            False,
            None,
            None,
            f"no HorizontalPodAutoscaler scales deployment {deployment!r}; the SeldonDeployment needs an "
            f"hpaSpec (minReplicas, maxReplicas, the external sls_ingress_qps metric)",
        )
    target, lo, hi = hpa.get("target"), int(hpa.get("min_replicas") or 1), hpa.get("max_replicas")
    plateau, source = qps_plateau(timeline, opts.metric_lag)
    peak, _ = _peak(timeline)
    if not target or hi is None:
        return Check(
            "replicas",
            False,
            None,
            peak,
            f"HPA {hpa.get('name')!r} has no External AverageValue target; cannot predict replicas",
        )
    if plateau is None or peak is None:
        return Check(
            "replicas",
            False,
            None,
            peak,
            f"nothing to compare: {source}; replicas were {'never read' if peak is None else peak}",
        )
    hi = int(hi)
    need = max(lo, math.ceil(round(plateau / target, 9)))
    expected = min(hi, need)
    observed = {"peak_replicas": peak, "qps_plateau": round(plateau, 2), "qps_source": source}
    exp = {
        "replicas": expected,
        "uncapped": need,
        "min": lo,
        "max": hi,
        "target": target,
        "tolerance": opts.replica_tolerance,
    }
    what = f"{_fmt(plateau)} QPS at target {_fmt(target)}"
    capped = plateau / target > hi * (1 + opts.hpa_tolerance)
    if capped:
        return Check(
            "replicas",
            False,
            exp,
            observed,
            f"replicas reached {peak} but the HPA formula predicts {need} for {what} — maxReplicas={hi} "
            f"caps it; raise maxReplicas to at least {need} or offer less load",
        )
    if abs(peak - expected) > opts.replica_tolerance:
        direction = "did not scale out as far as" if peak < expected else "scaled beyond"
        return Check(
            "replicas",
            False,
            exp,
            observed,
            f"replicas reached {peak} but the HPA formula predicts {expected} for {what} "
            f"(±{opts.replica_tolerance}) — the HPA {direction} the load explains"
            f"{_hpa_notes(timeline.get('samples') or [])}",
        )
    return Check(
        "replicas",
        True,
        exp,
        observed,
        f"replicas reached {peak}; the HPA formula predicts {expected} for {what} (±{opts.replica_tolerance})",
    )


def _new_pods(timeline: dict[str, Any]) -> tuple[dict[str, str | None], set[str]]:
    base = baseline_sample(timeline)
    before = {p["name"] for p in (base or {}).get("pods") or []}
    last_node: dict[str, str | None] = {}
    for s in timeline.get("samples") or []:
        if base is not None and s["t"] <= base["t"]:
            continue
        for p in s.get("pods") or []:
            if p["name"] in before:
                continue
            if p.get("node") or p["name"] not in last_node:
                last_node[p["name"]] = p.get("node")
    return last_node, before


def _node_index(timeline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for s in timeline.get("samples") or []:
        for n in s.get("nodes") or []:
            index[n["name"]] = n
    return index


def _expected_scale_out(timeline: dict[str, Any], opts: VerifyOptions) -> bool:
    hpa = (timeline.get("meta") or {}).get("hpa") or {}
    base = baseline_sample(timeline)
    plateau, _ = qps_plateau(timeline, opts.metric_lag)
    if not hpa.get("target") or plateau is None or base is None:
        return True
    need = min(
        int(hpa.get("max_replicas") or 1),
        max(int(hpa.get("min_replicas") or 1), math.ceil(round(plateau / hpa["target"], 9))),
    )
    return need > (replicas_of(base) or 0)


def check_placement(timeline: dict[str, Any], opts: VerifyOptions) -> Check:
    meta = timeline.get("meta") or {}
    pool = (
        meta.get("pool_id")
        or ", ".join(f"{k}={v}" for k, v in (meta.get("pool_selector") or {}).items())
        or "(unknown pool)"
    )
    new, _ = _new_pods(timeline)
    nodes = _node_index(timeline)
    placed = {p: n for p, n in new.items() if n}
    outside = {p: n for p, n in placed.items() if not (nodes.get(n) or {}).get("in_pool")}
    never = sorted(p for p, n in new.items() if not n)
    observed = {
        "new_pods": len(new),
        "scheduled": len(placed),
        "outside_pool": len(outside),
        "never_scheduled": len(never),
    }
    if not placed:
        if _expected_scale_out(timeline, opts):
            extra = f"; {len(never)} stayed Pending (the pool could not grow?)" if never else ""
            return Check(
                "placement",
                False,
                f"new pods on pool {pool}",
                observed,
                f"no new pod ran during the load although the load calls for a scale-out{extra}",
            )
        return Check(
            "placement",
            True,
            f"new pods on pool {pool}",
            observed,
            "the load did not call for new pods and none appeared",
        )
    if outside:
        detail = ", ".join(
            f"{p} on {n} (pool {(nodes.get(n) or {}).get('pool') or 'none'})" for p, n in sorted(outside.items())[:5]
        )
        return Check(
            "placement",
            False,
            f"new pods on pool {pool}",
            observed,
            f"{len(outside)} of {len(placed)} new pods ran outside the elastic pool {pool}: {detail}; "
            f"check the pods' nodeSelector against the pool's labels",
        )
    tail = f" ({len(never)} more were removed before they got a node)" if never else ""
    return Check(
        "placement",
        True,
        f"new pods on pool {pool}",
        observed,
        f"all {len(placed)} new pods ran on nodes of the elastic pool {pool}{tail}",
    )


def pool_peak(timeline: dict[str, Any]) -> dict[str, Any] | None:
    """The sample where the pool held the most nodes, with the counts by charge type and zone."""
    best = None
    for s in timeline.get("samples") or []:
        pool_nodes = [n for n in s.get("nodes") or [] if n.get("in_pool")]
        if best is None or len(pool_nodes) > best["total"]:
            by_charge: dict[str, int] = {}
            by_zone: dict[str, int] = {}
            for n in pool_nodes:
                by_charge[n["charge"]] = by_charge.get(n["charge"], 0) + 1
                zone = n.get("zone") or "unknown"
                by_zone[zone] = by_zone.get(zone, 0) + 1
            best = {
                "t": s["t"],
                "total": len(pool_nodes),
                "by_charge": by_charge,
                "by_zone": by_zone,
                "nodes": pool_nodes,
            }
    return best


def check_spot_mix(timeline: dict[str, Any], opts: VerifyOptions) -> Check:
    policy = opts.pool_policy
    assert policy is not None
    peak = pool_peak(timeline)
    if not peak or not peak["total"]:
        return Check(
            "spot_mix",
            False,
            policy.describe(),
            {"total": 0},
            "the elastic pool had no nodes during the load; nothing ran on it",
        )
    n = peak["total"]
    payg = peak["by_charge"].get(CHARGE_PAYG, 0)
    spot = peak["by_charge"].get(CHARGE_SPOT, 0)
    other = n - payg - spot
    want_payg = policy.payg_nodes(n)
    expected = {"payg": want_payg, "spot": n - want_payg, "policy": policy.describe(), "tolerance": opts.mix_tolerance}
    observed = {"total": n, "payg": payg, "spot": spot, "other": other, "by_zone": peak["by_zone"]}
    head = f"at its peak the pool had {n} node{'s' if n != 1 else ''}: {payg} pay-as-you-go, {spot} spot" + (
        f", {other} of unknown charge type" if other else ""
    )
    want = f"the policy ({policy.describe()}) gives {want_payg} pay-as-you-go, {n - want_payg} spot"
    if abs(payg - want_payg) > opts.mix_tolerance:
        hint = (
            " — more pay-as-you-go than the policy: spot stock may have run out and compensate_with_on_demand filled in"
            if payg > want_payg
            else ""
        )
        return Check("spot_mix", False, expected, observed, f"{head}; {want} (±{opts.mix_tolerance}){hint}")
    return Check("spot_mix", True, expected, observed, f"{head}; {want} (±{opts.mix_tolerance})")


def scale_out_window(timeline: dict[str, Any]) -> tuple[float, float, bool]:
    """From the first sample asking for more replicas than the baseline to the first with that many ready
    at the peak. ``(start, end, scaled)``; the whole load window when nothing scaled."""
    start, _, stop = _load_times(timeline)
    samples = timeline.get("samples") or []
    base = baseline_sample(timeline)
    base_replicas = replicas_of(base) if base else None
    peak, _ = _peak(timeline)
    if base_replicas is None or peak is None or peak <= base_replicas:
        return start, stop, False
    t0 = None
    for s in samples:
        desired = (s.get("hpa") or {}).get("desired")
        asked = desired if desired is not None else replicas_of(s)
        if s["t"] >= (base["t"] if base else start) and asked is not None and asked > base_replicas:
            t0 = s["t"]
            break
    if t0 is None:
        return start, stop, False
    t1 = next(
        (s["t"] for s in samples if s["t"] >= t0 and (s.get("deployment") or {}).get("ready", 0) >= peak),
        samples[-1]["t"],
    )
    return t0, t1, True


def _cumulative_at(history: list[dict[str, Any]], t: float) -> tuple[int, int]:
    rows = [h for h in history if h.get("t") is not None and h["t"] <= t]
    if not rows:
        return 0, 0
    return rows[-1]["total_requests"], rows[-1]["total_failures"]


def check_failures_during_scale_out(timeline: dict[str, Any], opts: VerifyOptions) -> Check:
    locust = timeline.get("locust") or {}
    history = locust.get("history") or []
    start, _, _ = _load_times(timeline)
    t0, t1, scaled = scale_out_window(timeline)
    # History rows are whole seconds, stamped when written: widen the window by one row each side.
    req0, fail0 = _cumulative_at(history, t0 - 1)
    req1, fail1 = _cumulative_at(history, t1 + 1)
    requests, failures = req1 - req0, fail1 - fail0
    window = f"{_rel(t0, start)}–{_rel(t1, start)}"
    where = f"during scale-out ({window})" if scaled else f"during the load ({window}; no scale-out happened)"
    observed = {"requests": requests, "failures": failures, "window": window, "scaled": scaled}
    if not history:
        return Check(
            "failures_during_scale_out",
            False,
            {"max_failures": opts.failure_budget},
            observed,
            "locust wrote no per-second history; cannot tell whether requests failed during scale-out",
        )
    if failures > opts.failure_budget:
        top = "; ".join(f"{f['error']} ({f['occurrences']}x)" for f in (locust.get("failures") or [])[:3])
        return Check(
            "failures_during_scale_out",
            False,
            {"max_failures": opts.failure_budget},
            observed,
            f"{failures} of {requests} requests failed {where}" + (f": {top}" if top else ""),
        )
    return Check(
        "failures_during_scale_out",
        True,
        {"max_failures": opts.failure_budget},
        observed,
        f"{failures} of {requests} requests failed {where} (budget {opts.failure_budget})",
    )


def check_scale_in(timeline: dict[str, Any], opts: VerifyOptions) -> Check:
    hpa = (timeline.get("meta") or {}).get("hpa") or {}
    lo = int(hpa.get("min_replicas") or 1)
    _, _, stop = _load_times(timeline)
    timeout = opts.scale_in_timeout
    if timeout is None:
        timeout = float((timeline.get("scale_in") or {}).get("timeout") or 0)
    after = [s for s in timeline.get("samples") or [] if s["t"] >= stop]
    reached = next(
        (s for s in after if replicas_of(s) == lo and (s.get("deployment") or {}).get("replicas", lo) <= lo), None
    )
    expected = {"replicas": lo, "within_s": timeout}
    if reached is not None and reached["t"] - stop <= timeout:
        took = reached["t"] - stop
        return Check(
            "scale_in",
            True,
            expected,
            {"replicas": lo, "after_s": round(took, 1)},
            f"replicas were back at minReplicas={lo} {took:.0f} s after the load stopped (limit {timeout:.0f} s)",
        )
    last = after[-1] if after else None
    now = replicas_of(last) if last else None
    waited = (last["t"] - stop) if last else 0.0
    return Check(
        "scale_in",
        False,
        expected,
        {"replicas": now, "after_s": round(waited, 1)},
        f"replicas were still {now if now is not None else 'unknown'} (minReplicas {lo}) {waited:.0f} s "
        f"after the load stopped (limit {timeout:.0f} s); the HPA's scale-down stabilization window "
        f"(default 300 s) or its scaleDown policy may be longer than the wait",
    )


def check_served_versions(timeline: dict[str, Any]) -> Check | None:
    """Every replica the load test saw ready served exactly the version under test (its model status API).
    None when the load test was not asked to check (no expected version)."""
    served = timeline.get("served_versions") or {}
    expected = served.get("expected")
    if expected is None:
        return None
    pods: dict[str, list[int]] = served.get("pods") or {}
    wrong = {name: versions for name, versions in pods.items() if versions != [expected]}
    if not pods:
        return Check(
            "served_version", False, expected, {}, "no replica answered the model status API during the load test"
        )
    if wrong:
        shown = ", ".join(f"{n} serves {v}" for n, v in sorted(wrong.items())[:5])
        return Check(
            "served_version",
            False,
            expected,
            wrong,
            f"{len(wrong)} of {len(pods)} replicas did not serve version {expected}: {shown}",
        )
    return Check(
        "served_version", True, expected, {"replicas": len(pods)}, f"all {len(pods)} replicas served version {expected}"
    )


def check_agreement(timeline: dict[str, Any], min_agreement: float | None) -> Check | None:
    """The load test's predictions agree with the labels at least ``min_agreement`` of the time."""
    checks = (timeline.get("locust") or {}).get("checks") or {}
    if min_agreement is None or not checks.get("checked"):
        return None
    agreement = 1 - checks["mismatches"] / checks["checked"]
    return Check(
        "prediction_agreement",
        agreement >= min_agreement,
        min_agreement,
        round(agreement, 4),
        f"{checks['checked'] - checks['mismatches']} of {checks['checked']} predictions agreed with the label "
        f"({agreement:.2%}; bound {min_agreement:.2%})",
    )


def check_load_test_slo(timeline: dict[str, Any]) -> Check | None:
    """The load test's own SLO (p95, error rate, agreement, versions), as it judged it: the scale report runs
    after a breach too, and its verdict must name the breach (None: a timeline from before the SLO was recorded)."""
    slo = timeline.get("slo")
    if not isinstance(slo, dict):
        return None
    breaches = [str(b) for b in slo.get("breaches") or []]
    return Check(
        "load_test_slo",
        not breaches,
        {"p95_ms": slo.get("p95_ms"), "error_rate": slo.get("error_rate")},
        breaches,
        "; ".join(breaches) if breaches else "the load test met its SLO",
    )


# -- facts (not checks) ---------------------------------------------------------------------------------
def pool_scale_in(timeline: dict[str, Any]) -> dict[str, Any]:
    """The elastic pool after the load: its nodes before the load (the baseline), at the peak and in the last
    sample; ``back_after_s``: seconds from the load's stop to the first sample with no more nodes than before
    (None: not within the recording); ``recorded_after_s``: how long after the load the recording went on."""
    samples = timeline.get("samples") or []
    _, _, stop = _load_times(timeline)
    scale_in = timeline.get("scale_in") or {}
    base = baseline_sample(timeline)
    before = scale_in.get("pool_nodes_before")
    if before is None:
        before = pool_node_count(base) if base else 0
    peak = max((pool_node_count(s) for s in samples), default=0)
    after = [s for s in samples if s["t"] >= stop]
    back = next((s for s in after if pool_node_count(s) <= before), None) if peak > before else None
    last = samples[-1] if samples else None
    return {
        "nodes_before": before,
        "nodes_at_peak": peak,
        "nodes_at_end": pool_node_count(last) if last else 0,
        "grew": peak > before,
        "back_after_s": round(back["t"] - stop, 1) if back else None,
        "recorded_after_s": round(last["t"] - stop, 1) if last and last["t"] >= stop else 0.0,
        "timeout_s": scale_in.get("pool_timeout"),
    }


def node_provisioning(timeline: dict[str, Any]) -> float | None:
    """Seconds from the first sample asking for more replicas than the baseline to the first new pool node
    Ready (None: no new node became Ready, or nothing scaled). Sample-resolution, wall-clock seconds."""
    t0, _, scaled = scale_out_window(timeline)
    base = baseline_sample(timeline)
    if not scaled or base is None:
        return None
    known = {n["name"] for n in base.get("nodes") or [] if n.get("in_pool")}
    for s in timeline.get("samples") or []:
        if s["t"] < t0:
            continue
        if any(n.get("in_pool") and n.get("ready") and n["name"] not in known for n in s.get("nodes") or []):
            return round(s["t"] - t0, 1)
    return None


# -- all together ---------------------------------------------------------------------------------------
def verify(timeline: dict[str, Any], opts: VerifyOptions | None = None) -> Verification:
    opts = opts or VerifyOptions()
    result = Verification()
    result.checks.append(check_replicas(timeline, opts))
    result.checks.append(check_placement(timeline, opts))
    if opts.pool_policy is not None:
        result.checks.append(check_spot_mix(timeline, opts))
    result.checks.append(check_failures_during_scale_out(timeline, opts))
    if opts.check_scale_in:
        result.checks.append(check_scale_in(timeline, opts))
    for extra in (
        check_load_test_slo(timeline),
        check_served_versions(timeline),
        check_agreement(timeline, opts.min_agreement),
    ):
        if extra is not None:
            result.checks.append(extra)
    peak, _ = _peak(timeline)
    pool = pool_peak(timeline)
    result.facts = {
        "replicas_reached": peak,
        "nodes_by_charge": (pool or {}).get("by_charge", {}),
        "nodes_by_zone": (pool or {}).get("by_zone", {}),
        "pool_nodes_at_peak": (pool or {}).get("total", 0),
        "pool_scale_in": pool_scale_in(timeline),
        "node_provisioning_s": node_provisioning(timeline),
    }
    return result


def summary(timeline: dict[str, Any], result: Verification, *, report_path: str | None = None) -> dict[str, Any]:
    """The one-line JSON of DESIGN §5: endpoint, replicas reached, nodes by charge type, p95, error rate,
    verdict, report path."""
    stats = (timeline.get("locust") or {}).get("stats") or {}
    return {
        "endpoint": (timeline.get("load") or {}).get("endpoint"),
        "replicas_reached": result.facts.get("replicas_reached"),
        "nodes_by_charge_type": result.facts.get("nodes_by_charge", {}),
        "p95_latency_ms": stats.get("p95_ms"),
        "error_rate": stats.get("error_rate"),
        "rps": stats.get("rps"),
        "verdict": "passed" if result.passed else "failed",
        "failed_checks": [c.name for c in result.failures()],
        "report_path": report_path,
    }
