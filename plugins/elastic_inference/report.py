"""One self-contained HTML report per run: plots (base64 PNG, matplotlib Agg), the checks and a cost estimate.

Plots: offered RPS and the QPS metric against HPA desired/current replicas, ready pods and pool nodes
over time; latency percentiles and failures over time; the pool's nodes by charge type over time; the node
mix at the pool's peak by zone and charge type. Every time plot spans the whole recording, the tail after the
load included (the load test records until the replicas and the pool are back, see ``operators.load_test``).
The cost is an estimate from a price table (instance type -> pay-as-you-go and spot USD/hour): node-hours by
charge type before, during and after the load, times the price. On the sandbox (a ``time_scale`` is known)
the report says its cloud delays were compressed and what the measured ones come to on ACK. After a canary rollout: stable vs canary side by side (traffic share, RPS,
errors, p95 over time), the verdict of each step and the prober's line - in the scale report, and as
``rollout.html`` of its own (a rolled-back run has no scale report).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elastic_inference.timeline import CHARGE_PAYG, CHARGE_SPOT, CHARGE_SUBSCRIPTION, replicas_of
from elastic_inference.verification import Verification, node_provisioning, pool_peak, pool_scale_in

# Instance type -> (pay-as-you-go, spot) USD per hour. Illustrative list prices of the order of cn-beijing,
# the same numbers as the sandbox's ECS catalogue (ack_sandbox/cs/catalogue.py), so a sandbox run's estimate
# matches what its node pool "bought". Not a quote: pass ``price_table`` with your region's prices (ECS
# pricing page / DescribePrice / DescribeSpotPriceHistory) for a real estimate.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "ecs.gn6i-c4g1.xlarge": (1.05, 0.2625),
    "ecs.gn6i-c8g1.2xlarge": (1.28, 0.32),
    "ecs.gn6v-c8g1.2xlarge": (2.31, 0.693),
    "ecs.gn7i-c8g1.2xlarge": (1.72, 0.516),
    "ecs.g7.large": (0.10, 0.02),
    "ecs.g7.xlarge": (0.20, 0.04),
    "ecs.g7.2xlarge": (0.40, 0.08),
    "ecs.c7.xlarge": (0.16, 0.032),
    "ecs.r7.xlarge": (0.26, 0.052),
}

COLORS = {CHARGE_PAYG: "#1f77b4", CHARGE_SPOT: "#ff7f0e", CHARGE_SUBSCRIPTION: "#2ca02c", "unknown": "#7f7f7f"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _t0(timeline: dict[str, Any]) -> float:
    load = timeline.get("load") or {}
    if load.get("start") is not None:
        return float(load["start"])
    samples = timeline.get("samples") or []
    return float(samples[0]["t"]) if samples else 0.0


def _xlim(ax: Any, timeline: dict[str, Any]) -> None:
    """Every time plot spans the same range: the whole recording (or the load when nothing was recorded)."""
    t0 = _t0(timeline)
    times = [s["t"] for s in timeline.get("samples") or []]
    times += [h["t"] for h in (timeline.get("locust") or {}).get("history") or [] if h.get("t") is not None]
    load = timeline.get("load") or {}
    times += [float(load[k]) for k in ("start", "stop") if load.get(k) is not None]
    if times and max(times) > min(times):
        ax.set_xlim(min(times) - t0, max(times) - t0 + 1)


def _legend(ax: Any, ax2: Any | None = None, ncol: int = 4) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, fontsize=8, frameon=False)


def _phases(ax: Any, timeline: dict[str, Any]) -> None:
    load = timeline.get("load") or {}
    t0 = _t0(timeline)
    if load.get("start") is None or load.get("stop") is None:
        return
    hold = float(load.get("hold_start", load["start"]))
    ax.axvspan(0, hold - t0, color="#2ca02c", alpha=0.06, lw=0)
    ax.axvspan(hold - t0, float(load["stop"]) - t0, color="#2ca02c", alpha=0.14, lw=0)
    ax.axvline(float(load["stop"]) - t0, color="#555", ls=":", lw=1)
    ax.text(
        float(load["stop"]) - t0,
        1.0,
        " load stops",
        transform=ax.get_xaxis_transform(),
        va="top",
        fontsize=8,
        color="#555",
    )


def _pool_back(ax: Any, timeline: dict[str, Any]) -> None:
    """Mark when the pool was back to its nodes from before the load (the end of the paid tail)."""
    back = pool_scale_in(timeline)["back_after_s"]
    stop = (timeline.get("load") or {}).get("stop")
    if back is None or stop is None:
        return
    x = float(stop) + back - _t0(timeline)
    ax.axvline(x, color="#1f77b4", ls=":", lw=1)
    ax.text(
        x, 0.55, "pool back ", transform=ax.get_xaxis_transform(), ha="right", va="top", fontsize=8, color="#1f77b4"
    )


def plot_scaling(timeline: dict[str, Any]) -> str:
    """QPS (offered RPS and the metric) vs replicas (desired, current, ready) vs pool nodes over time."""
    return _png(scaling_figure(timeline))


def scaling_figure(timeline: dict[str, Any]) -> Any:
    """The figure of :func:`plot_scaling`: axes[0] requests/s, axes[1] replicas/nodes (and maxReplicas)."""
    plt = _plt()
    t0 = _t0(timeline)
    samples = timeline.get("samples") or []
    history = (timeline.get("locust") or {}).get("history") or []
    fig, ax = plt.subplots(figsize=(10, 4.2))
    _phases(ax, timeline)
    if history:
        ax.plot(
            [h["t"] - t0 for h in history],
            [h["rps"] for h in history],
            color="#2ca02c",
            lw=1.5,
            label="RPS sent (locust, sliding avg)",
        )
    metric = [(s["t"] - t0, s["qps"]) for s in samples if s.get("qps") is not None]
    metric_name = ((timeline.get("meta") or {}).get("metric") or {}).get("name") or "metric"
    if metric:
        ax.plot(*zip(*metric), color="#17becf", lw=1.5, marker=".", label=f"{metric_name} (HPA input)")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("requests / s")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    xs = [s["t"] - t0 for s in samples]
    series = [
        ("HPA desired", [(s.get("hpa") or {}).get("desired") for s in samples], "#d62728", "--"),
        ("replicas", [replicas_of(s) for s in samples], "#9467bd", "-"),
        ("ready pods", [(s.get("deployment") or {}).get("ready") for s in samples], "#8c564b", "-."),
        ("pool nodes", [sum(1 for n in s.get("nodes") or [] if n.get("in_pool")) for s in samples], "#7f7f7f", ":"),
    ]
    top = 1
    for label, ys, color, ls in series:
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts:
            ax2.step(*zip(*pts), where="post", color=color, ls=ls, lw=2, label=label)
            top = max(top, max(y for _, y in pts))
    hpa = (timeline.get("meta") or {}).get("hpa") or {}
    if hpa.get("max_replicas"):
        # A replica count: labelled at the right, beside the replicas axis it is drawn against (not the RPS one).
        ax2.axhline(hpa["max_replicas"], color="#d62728", lw=0.8, alpha=0.5)
        ax2.text(
            0.995,
            hpa["max_replicas"],
            f"maxReplicas {hpa['max_replicas']} →",
            transform=ax2.get_yaxis_transform(),
            color="#d62728",
            fontsize=8,
            ha="right",
            va="bottom",
            alpha=0.9,
        )
        top = max(top, hpa["max_replicas"])
    _pool_back(ax, timeline)
    ax2.set_ylim(0, top + 1)
    ax2.set_ylabel("replicas / nodes")
    _xlim(ax, timeline)
    _legend(ax, ax2, ncol=3)
    ax.set_title("Load vs replicas vs nodes")
    return fig


def plot_latency(timeline: dict[str, Any]) -> str:
    plt = _plt()
    t0 = _t0(timeline)
    history = [h for h in (timeline.get("locust") or {}).get("history") or [] if not h.get("final")]
    fig, ax = plt.subplots(figsize=(10, 3.4))
    _phases(ax, timeline)
    for key, label, color in (("p50_ms", "p50", "#2ca02c"), ("p95_ms", "p95", "#ff7f0e"), ("p99_ms", "p99", "#d62728")):
        pts = [(h["t"] - t0, h[key]) for h in history if h.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), label=label, color=color, lw=1.5)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    fails = [(h["t"] - t0, h["failures_per_s"]) for h in history]
    if fails and any(f for _, f in fails):
        ax2.bar(
            [x for x, _ in fails], [f for _, f in fails], width=1.0, color="#d62728", alpha=0.35, label="failures / s"
        )
        ax2.set_ylabel("failures / s")
    else:
        ax2.set_yticks([])
    _xlim(ax, timeline)
    _legend(ax, ax2)
    ax.set_title("Latency percentiles (locust, sliding window)")
    return _png(fig)


def plot_nodes_over_time(timeline: dict[str, Any]) -> str:
    plt = _plt()
    t0 = _t0(timeline)
    samples = timeline.get("samples") or []
    charges = sorted({n["charge"] for s in samples for n in s.get("nodes") or [] if n.get("in_pool")}) or [CHARGE_PAYG]
    xs = [s["t"] - t0 for s in samples]
    ys = [
        [sum(1 for n in s.get("nodes") or [] if n.get("in_pool") and n["charge"] == c) for s in samples]
        for c in charges
    ]
    fig, ax = plt.subplots(figsize=(10, 2.8))
    _phases(ax, timeline)
    if xs:
        ax.stackplot(
            xs, *ys, labels=charges, colors=[COLORS.get(c, "#7f7f7f") for c in charges], step="post", alpha=0.85
        )
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("pool nodes")
    ax.yaxis.get_major_locator().set_params(integer=True)
    _pool_back(ax, timeline)
    _xlim(ax, timeline)
    _legend(ax)
    ax.set_title("Elastic pool nodes by charge type")
    return _png(fig)


def plot_node_mix(peak: dict[str, Any] | None) -> str:
    """Pool nodes at the pool's peak: one bar per zone, stacked by charge type."""
    plt = _plt()
    nodes = (peak or {}).get("nodes") or []
    zones = sorted({n.get("zone") or "unknown" for n in nodes}) or ["(none)"]
    charges = sorted({n["charge"] for n in nodes}) or [CHARGE_PAYG]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bottom = [0] * len(zones)
    for c in charges:
        counts = [sum(1 for n in nodes if (n.get("zone") or "unknown") == z and n["charge"] == c) for z in zones]
        ax.bar(zones, counts, bottom=bottom, label=c, color=COLORS.get(c, "#7f7f7f"))
        bottom = [b + k for b, k in zip(bottom, counts)]
    ax.set_ylabel("nodes")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    ax.set_title("Node mix at the pool's peak, by zone")
    return _png(fig)


PHASES = ("before the load", "during the load", "after the load")


def estimate_cost(
    timeline: dict[str, Any], price_table: Mapping[str, tuple[float, float]] | None = None
) -> dict[str, Any]:
    """Hourly cost of the pool at its peak, and what the run used: node-hours by charge type x price, split
    into before, during and after the load (each sample's nodes held until the next sample)."""
    prices = dict(DEFAULT_PRICES)
    prices.update({k: (float(v[0]), float(v[1])) for k, v in (price_table or {}).items()})
    peak = pool_peak(timeline)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    unpriced: set[str] = set()

    def price(node: dict[str, Any]) -> float | None:
        p = prices.get(node.get("instance_type") or "")
        if p is None:
            unpriced.add(node.get("instance_type") or "(no instance-type label)")
            return None
        return p[1] if node["charge"] == CHARGE_SPOT else p[0]

    for n in (peak or {}).get("nodes") or []:
        key = (n.get("instance_type") or "(unknown)", n["charge"])
        row = rows.setdefault(
            key, {"instance_type": key[0], "charge": key[1], "nodes": 0, "unit_price": price(n), "hourly": 0.0}
        )
        row["nodes"] += 1
        if row["unit_price"] is not None:
            row["hourly"] = round(row["unit_price"] * row["nodes"], 4)
    phases = _phase_costs(timeline, price)
    hourly = round(sum(r["hourly"] for r in rows.values()), 4)
    all_payg = 0.0
    for n in (peak or {}).get("nodes") or []:
        p = prices.get(n.get("instance_type") or "")
        all_payg += p[0] if p else 0.0
    by_name = {p["name"]: p for p in phases}
    return {
        "rows": sorted(rows.values(), key=lambda r: (r["instance_type"], r["charge"])),
        "hourly_at_peak": hourly,
        "hourly_if_all_payg": round(all_payg, 4),
        "run_cost": round(sum(p["cost"] for p in phases), 4),
        "load_cost": by_name["during the load"]["cost"],
        "after_cost": by_name["after the load"]["cost"],
        "phases": phases,
        "charges": sorted({c for p in phases for c in p["node_hours"]}),
        "unpriced": sorted(unpriced),
        "currency": "USD",
    }


def _phase_costs(timeline: dict[str, Any], price: Any) -> list[dict[str, Any]]:
    """Per phase: its recorded seconds, the pool's node-hours by charge type and their cost. A sample's nodes
    count from it to the next sample; an interval that crosses the load's start or stop is split there."""
    load = timeline.get("load") or {}
    samples = timeline.get("samples") or []
    start = float(load.get("start", samples[0]["t"] if samples else 0.0))
    stop = float(load.get("stop", samples[-1]["t"] if samples else start))
    bounds = [(-math.inf, start), (start, stop), (stop, math.inf)]
    seconds = [0.0 for _ in PHASES]
    costs = [0.0 for _ in PHASES]
    hours: list[dict[str, float]] = [{} for _ in PHASES]
    for a, b in zip(samples, samples[1:]):
        pool = [n for n in a.get("nodes") or [] if n.get("in_pool")]
        for i, (lo, hi) in enumerate(bounds):
            dt = min(b["t"], hi) - max(a["t"], lo)
            if dt <= 0:
                continue
            seconds[i] += dt
            for n in pool:
                hours[i][n["charge"]] = hours[i].get(n["charge"], 0.0) + dt / 3600
                costs[i] += (price(n) or 0.0) * dt / 3600
    return [
        {
            "name": name,
            "seconds": round(seconds[i], 1),
            "node_hours": {k: round(v, 5) for k, v in sorted(hours[i].items())},
            "cost": round(costs[i], 5),
        }
        for i, name in enumerate(PHASES)
    ]


def fmt_duration(seconds: float | None) -> str:
    """``6 s``, ``2.5 min``, ``23 min``, ``1.5 h``: a duration as a person says it."""
    if seconds is None:
        return "n/a"
    if seconds < 90:
        return f"{int(seconds + 0.5)} s"
    if seconds < 600:
        return f"{seconds / 60:.1f}".removesuffix(".0") + " min"
    if seconds < 90 * 60:
        return f"{int(seconds / 60 + 0.5)} min"
    return f"{seconds / 3600:.1f} h"


def time_scale_note(timeline: dict[str, Any], time_scale: float | None, cost: Mapping[str, Any]) -> str | None:
    """What the sandbox's compressed cloud delays mean on ACK, in one paragraph (None: no time scale known, e.g.
    a real cluster: nothing to say). The load itself runs in real time; the cloud's delays (node provisioning,
    the HPA's stabilization, the autoscaler's scale-down) ran ``time_scale`` times faster."""
    if time_scale is None:
        return None
    if time_scale == 1:
        return "Sandbox run; the cloud's delays ran at their real durations (time scale 1)."
    n = f"{time_scale:g}×"
    parts = []
    prov = node_provisioning(timeline)
    if prov is not None:
        parts.append(f"node provisioning {fmt_duration(prov)} here is ~{fmt_duration(prov * time_scale)} on ACK")
    pool = pool_scale_in(timeline)
    if pool["back_after_s"] is not None:
        back = pool["back_after_s"]
        parts.append(
            f"the pool back to {pool['nodes_before']} node(s) {fmt_duration(back)} after the load is "
            f"~{fmt_duration(back * time_scale)} on ACK"
        )
        if cost.get("after_cost"):
            parts.append(
                f"its cost after the load, {cost['after_cost']:.4f} {cost['currency']} here, would be "
                f"~{cost['after_cost'] * time_scale:.4f} {cost['currency']}"
            )
    elif pool["grew"]:
        parts.append(
            f"the pool still had {pool['nodes_at_end']} node(s) (before the load: {pool['nodes_before']}) when the "
            f"recording ended {fmt_duration(pool['recorded_after_s'])} after the load, ~"
            f"{fmt_duration(pool['recorded_after_s'] * time_scale)} on ACK"
        )
    text = f"Sandbox run: the cloud's delays were compressed {n} (the connection's time_scale)"
    text += (": " + "; ".join(parts) + "." if parts else ".") + " The load itself ran in real time."
    return text


def fmt_value(value: Any) -> str:
    """Check values for people: ``replicas=4, tolerance=1`` rather than a Python dict."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.2f}"
    return "n/a" if value is None else str(value)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.verdict{display:inline-block;padding:.2em .8em;border-radius:4px;color:#fff;font-weight:600}
.passed{background:#2ca02c} .failed{background:#d62728}
table{border-collapse:collapse;width:100%;font-size:.9em} td,th{border:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f5} .ok{color:#2ca02c;font-weight:700} .bad{color:#d62728;font-weight:700}
.kv td:first-child{width:14em;color:#555} .note{background:#fff8e1;border-left:4px solid #f0ad4e;padding:.4em .8em} img{max-width:100%} code{font-size:.85em} .muted{color:#777;font-size:.85em}
</style></head><body>
<h1>{{ title }}</h1>
<p><span class="verdict {{ verdict }}">verification {{ verdict }}</span>
 <span class="muted">generated {{ generated }}</span>{% if run_link %} · <a href="{{ run_link }}">the run in Airflow</a>{% endif %}</p>
{% if summary.failed_checks %}<p class="bad">failed checks: {{ summary.failed_checks|join(", ") }}</p>{% endif %}
{% if time_note %}<p class="note" id="time-scale">{{ time_note }}</p>{% endif %}
<table class="kv">
<tr><td>endpoint</td><td><code>{{ summary.endpoint }}</code></td></tr>
<tr><td>requests</td><td>{{ stats.requests }} ({{ stats.failures }} failed, error rate {{ "%.2f"|format(100 * (stats.error_rate or 0)) }} %)</td></tr>
<tr><td>throughput</td><td>{{ "%.1f"|format(stats.rps or 0) }} RPS (offered {{ plan.target_rps }} RPS by {{ plan.users }} users)</td></tr>
<tr><td>latency</td><td>p50 {{ stats.p50_ms }} ms · p95 {{ stats.p95_ms }} ms · p99 {{ stats.p99_ms }} ms</td></tr>
<tr><td>label checks</td><td>{{ stats.mismatches or 0 }} of {{ stats.checked or 0 }} predictions disagreed with the label</td></tr>
<tr><td>replicas reached</td><td>{{ summary.replicas_reached }}{% if hpa %} (HPA {{ hpa.name }}: min {{ hpa.min_replicas }}, max {{ hpa.max_replicas }}, target {{ hpa.target }} {{ hpa.metric }}){% endif %}</td></tr>
<tr><td>pool nodes at peak</td><td>{% for k, v in summary.nodes_by_charge_type.items() %}{{ v }} {{ k }}{% if not loop.last %}, {% endif %}{% else %}none{% endfor %}</td></tr>
<tr><td>pool scale-in</td><td id="pool-scale-in">{% if not pool.grew %}the pool did not grow ({{ pool.nodes_before }} node(s) before the load, {{ pool.nodes_at_peak }} at most)
{% elif pool.back_after_s is not none %}back to {{ pool.nodes_before }} node(s) {{ pool.back_after_s|dur }} after the load stopped (from {{ pool.nodes_at_peak }} at the peak)
{% else %}not back: {{ pool.nodes_at_end }} node(s) (before the load {{ pool.nodes_before }}, peak {{ pool.nodes_at_peak }}) when the recording ended {{ pool.recorded_after_s|dur }} after the load{% if pool.timeout_s is not none %} (pool_scale_in_timeout {{ pool.timeout_s|dur }}){% endif %}; the cost after the load below stops there{% endif %}</td></tr>
<tr><td>estimated cost</td><td>{{ "%.2f"|format(cost.hourly_at_peak) }} {{ cost.currency }}/h at peak (all pay-as-you-go would be {{ "%.2f"|format(cost.hourly_if_all_payg) }}); this run used ≈ {{ "%.4f"|format(cost.run_cost) }} {{ cost.currency }}: {{ "%.4f"|format(cost.load_cost) }} during the load, {{ "%.4f"|format(cost.after_cost) }} after it</td></tr>
</table>

<h2>Checks</h2>
<table><tr><th></th><th>check</th><th>expected</th><th>observed</th><th>message</th></tr>
{% for c in checks %}<tr><td class="{{ 'ok' if c.passed else 'bad' }}">{{ '✓' if c.passed else '✗' }}</td><td>{{ c.name }}</td>
<td>{{ c.expected|fmt }}</td><td>{{ c.observed|fmt }}</td><td>{{ c.message }}</td></tr>
{% endfor %}</table>

<h2>Load, replicas and nodes</h2>
<img alt="QPS vs replicas vs nodes over time" src="data:image/png;base64,{{ plots.scaling }}">
<h2>Latency</h2>
<img alt="latency percentiles over time" src="data:image/png;base64,{{ plots.latency }}">
<h2>Nodes</h2>
<img alt="pool nodes by charge type over time" src="data:image/png;base64,{{ plots.nodes }}">
<img alt="node mix by charge type and zone" src="data:image/png;base64,{{ plots.mix }}">

<h2>Estimated cost</h2>
<table><tr><th>instance type</th><th>charge type</th><th>nodes at peak</th><th>{{ cost.currency }}/h each</th><th>{{ cost.currency }}/h</th></tr>
{% for r in cost.rows %}<tr><td>{{ r.instance_type }}</td><td>{{ r.charge }}</td><td>{{ r.nodes }}</td>
<td>{{ r.unit_price if r.unit_price is not none else "no price" }}</td><td>{{ r.hourly }}</td></tr>
{% else %}<tr><td colspan="5">the pool had no nodes</td></tr>{% endfor %}</table>
<table id="cost-phases"><tr><th>phase</th><th>recorded</th>{% for c in cost.charges %}<th>{{ c }} node-hours</th>{% endfor %}<th>{{ cost.currency }}</th></tr>
{% for p in cost.phases %}<tr><td>{{ p.name }}</td><td>{{ p.seconds|dur }}</td>{% for c in cost.charges %}<td>{{ "%.4f"|format(p.node_hours.get(c, 0)) }}</td>{% endfor %}<td>{{ "%.4f"|format(p.cost) }}</td></tr>
{% endfor %}</table>
<p class="muted">Node-hours of the elastic pool by charge type (each sample's nodes held until the next sample) × the price per hour of the node's instance type and charge type.
Prices from the report's price table (illustrative list prices unless the DAG passes its own).
{% if cost.unpriced %}No price for: {{ cost.unpriced|join(", ") }}.{% endif %}</p>

{% if failures %}<h2>Most frequent errors</h2>
<table><tr><th>occurrences</th><th>request</th><th>error</th></tr>
{% for f in failures %}<tr><td>{{ f.occurrences }}</td><td>{{ f.method }} {{ f.name }}</td><td>{{ f.error }}</td></tr>{% endfor %}
</table>{% endif %}
{{ rollout_html }}
<p class="muted">Timeline: {{ samples }} samples of {{ meta.namespace }}/{{ meta.deployment }}{% if recorder_errors %}, {{ recorder_errors }} failed reads{% endif %}.</p>
</body></html>
"""


def render_report(
    timeline: dict[str, Any],
    result: Verification,
    summary: dict[str, Any],
    out_path: Path,
    *,
    price_table: Mapping[str, tuple[float, float]] | None = None,
    title: str | None = None,
    rollout: Mapping[str, Any] | None = None,
    run_link: str | None = None,
    time_scale: float | None = None,
) -> Path:
    """Write the self-contained HTML report to ``out_path`` and return it (``run_link``: the run in Airflow;
    ``time_scale``: the sandbox's, None against a real cluster)."""
    import jinja2
    import markupsafe

    locust = timeline.get("locust") or {}
    peak = pool_peak(timeline)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    env.filters["fmt"] = fmt_value
    env.filters["dur"] = fmt_duration
    cost = estimate_cost(timeline, price_table)
    html = env.from_string(_TEMPLATE).render(
        title=title or f"Elastic inference scale report — {(timeline.get('meta') or {}).get('deployment') or ''}",
        verdict=summary["verdict"],
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        summary=summary,
        stats=locust.get("stats") or {},
        plan=(timeline.get("load") or {}).get("plan") or {},
        hpa=(timeline.get("meta") or {}).get("hpa"),
        meta=timeline.get("meta") or {},
        checks=[c.to_dict() for c in result.checks],
        failures=(locust.get("failures") or [])[:10],
        cost=cost,
        pool=pool_scale_in(timeline),
        time_note=time_scale_note(timeline, time_scale, cost),
        plots={
            "scaling": plot_scaling(timeline),
            "latency": plot_latency(timeline),
            "nodes": plot_nodes_over_time(timeline),
            "mix": plot_node_mix(peak),
        },
        samples=len(timeline.get("samples") or []),
        recorder_errors=timeline.get("recorder_errors") or 0,
        rollout_html=markupsafe.Markup(rollout_section(rollout)) if rollout else "",
        run_link=run_link,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html, encoding="utf-8")
    return out_path


# -- the rollout ------------------------------------------------------------------------------------------------

_ROLLOUT_TEMPLATE = """<h2>Rollout: stable v{{ r.stable_version }} vs canary v{{ r.canary_version }} —
<span class="verdict {{ 'passed' if r.verdict in ('promoted', 'analysis passed') else 'failed' }}">{{ r.verdict }}</span></h2>
{% if r.failure %}<p class="bad">{{ r.failure }}</p>{% endif %}
<table><tr><th>step</th><th>verdict</th><th>side</th><th>requests</th><th>RPS</th><th>errors</th><th>p95 ms</th>
<th>agreement</th><th>public traffic share</th></tr>
<tr><td colspan="9" class="muted">Each step sends the same labelled requests to both sides at the same rate, pinned by
the canary header, over the same seconds; the public traffic (the prober's) is split by the canary weight.</td></tr>
{% for s in r.steps %}{% for side in ('canary', 'stable') %}<tr>
{% if loop.first %}<td rowspan="2">{{ s.weight }} %</td><td rowspan="2" class="{{ 'ok' if s.passed else 'bad' }}">
{{ 'pass' if s.passed else 'FAIL' }}{% for b in s.bounds if not b.passed %}<br>{{ b.message }}{% endfor %}</td>{% endif %}
<td>{{ side }}</td><td>{{ s[side].requests }}</td><td>{{ "%.1f"|format(s[side].rps) }}</td>
<td>{{ s[side].failures }} ({{ "%.2f"|format(100 * s[side].error_rate) }} %)</td><td>{{ s[side].p95_ms|fmt }}</td>
<td>{{ "n/a" if s[side].agreement is none else "%.1f %%"|format(100 * s[side].agreement) }}</td>
{% if loop.first %}<td rowspan="2">canary {{ s.weight }} % / stable {{ 100 - s.weight }} %{% if s.share.location_qps is not none %}<br><span class="muted">location {{ s.share.location_qps|fmt }} req/s (ingress)</span>{% endif %}</td>{% endif %}</tr>{% endfor %}{% endfor %}
</table>
{% if plot %}<img alt="canary vs stable over time" src="data:image/png;base64,{{ plot }}">{% endif %}
<p><b>{{ prober.line or "prober: not run (no canary step reached)" }}</b>{% for f in prober.first_failures %}<br>
<span class="bad">{{ f.segment }}: {{ f.error }}</span>{% endfor %}</p>
"""


def plot_rollout(rollout: Mapping[str, Any]) -> str | None:
    """p95 and RPS of canary and stable over the analysis, one panel each, the steps marked."""
    series = rollout.get("series") or []
    if not series:
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2))
    t0 = min((p["t"] for step in series for side in ("canary", "stable") for p in step[side]), default=0.0)
    for side, color in (("canary", "#d62728"), ("stable", "#1f77b4")):
        pts = [p for step in series for p in step[side]]
        ax1.plot(
            [p["t"] - t0 for p in pts if p["p95_ms"] is not None],
            [p["p95_ms"] for p in pts if p["p95_ms"] is not None],
            label=f"{side} p95",
            color=color,
            lw=1.4,
        )
        ax2.plot([p["t"] - t0 for p in pts], [p["rps"] for p in pts], label=f"{side} RPS", color=color, lw=1.4)
        errs = [(p["t"] - t0, p["errors"]) for p in pts if p["errors"]]
        if errs:
            ax2.bar(*zip(*errs), width=1.0, color=color, alpha=0.3, label=f"{side} errors")
    for step in series:
        first = [p["t"] for side in ("canary", "stable") for p in step[side]]
        if first:
            for ax in (ax1, ax2):
                ax.axvline(min(first) - t0, color="#999", lw=0.8, ls="--")
            ax1.text(min(first) - t0, ax1.get_ylim()[1] * 0.95, f" {step['weight']} %", fontsize=8, color="#555")
    ax1.set_ylabel("p95 (ms)")
    ax2.set_ylabel("requests / s")
    for ax in (ax1, ax2):
        ax.set_xlabel("seconds since the analysis started")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    ax1.set_title("Latency: canary vs stable (same window)")
    ax2.set_title("Requests and errors per second")
    return _png(fig)


def rollout_section(rollout: Mapping[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    env.filters["fmt"] = fmt_value
    prober = rollout.get("prober") or rollout.get("prober_rollback") or rollout.get("prober_analysis") or {}
    return env.from_string(_ROLLOUT_TEMPLATE).render(r=rollout, prober=prober, plot=plot_rollout(rollout))


def render_rollout_report(rollout: Mapping[str, Any], out_path: Path) -> Path:
    """``rollout.html``: the rollout section alone (the run of a rolled-back canary has no scale report)."""
    head = _TEMPLATE.split("<h1>", 1)[0]
    title = f"Rollout of version {rollout.get('canary_version')} — {rollout.get('stable_name') or ''}"
    html = head.replace("{{ title }}", title) + f"<h1>{title}</h1>" + rollout_section(rollout) + "</body></html>"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html, encoding="utf-8")
    return out_path


__all__ = [
    "DEFAULT_PRICES",
    "estimate_cost",
    "fmt_duration",
    "render_report",
    "render_rollout_report",
    "rollout_section",
    "time_scale_note",
]
