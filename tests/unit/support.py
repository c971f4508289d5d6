"""Synthetic load-test timelines the unit tests share (``make_timeline``), with the seed pool's policy.

A plain module, not a test module: test modules import it (``from tests.unit.support import ...``), never each other.
"""

from __future__ import annotations

import math

from elastic_inference.verification import PoolPolicy, VerifyOptions

START, HOLD, STOP = 1000.0, 1010.0, 1060.0
SEED_POLICY = PoolPolicy(
    spot_strategy="SpotAsPriceGo", on_demand_base_capacity=0, on_demand_percentage_above_base_capacity=30
)


def node(name, charge="Spot", zone="cn-beijing-h", in_pool=True):
    return {
        "name": name,
        "pool": "np-elastic" if in_pool else "np-default",
        "in_pool": in_pool,
        "charge": charge,
        "spot_strategy": "NoSpot" if charge == "PayAsYouGo" else "SpotAsPriceGo",
        "zone": zone,
        "instance_type": "ecs.gn6i-c4g1.xlarge",
        "ready": True,
    }


def make_timeline(
    *,
    qps=48.0,
    target=10,
    min_r=1,
    max_r=10,
    peak=None,
    charges=None,
    outside=(),
    fail_at=(),
    scale_in_at=1080.0,
    scale_in_timeout=60.0,
    metric=True,
    pool_in_at="replicas",
):
    """A load from t=1000 (hold 1010-1060) on a pool that grows one node per new pod.

    ``peak`` defaults to what the HPA formula gives; ``charges`` are the pool nodes' charge types in the
    order they appear; ``outside`` names new pods placed on a node outside the pool; ``fail_at`` are the
    seconds at which one request fails; ``scale_in_at`` when replicas are back at min (None: never);
    ``pool_in_at`` when the pool has released the nodes it added (default: with the replicas; None: never).
    Nodes appear when the HPA asks for their pods (t=1015) and become Ready at t=1020.
    """
    if pool_in_at == "replicas":
        pool_in_at = scale_in_at
    if peak is None:
        peak = min(max_r, max(min_r, math.ceil(qps / target)))
    charges = list(charges or (["PayAsYouGo"] + ["Spot"] * (peak - 1)))
    samples = []
    t = 990.0
    while t <= 1120.0:
        scaled_in = scale_in_at is not None and t >= scale_in_at
        if t < 1015 or scaled_in:
            desired = current = ready = min_r
        else:
            desired = current = peak
            ready = peak if t >= 1030 else min_r
        pods = [{"name": "p0", "node": "n0", "phase": "Running", "ready": True}]
        for i in range(1, current):
            pod_node = "n-default" if f"p{i}" in outside else f"n{i}"
            ok = t >= 1030
            pods.append(
                {
                    "name": f"p{i}",
                    "node": pod_node if ok or t >= 1020 else None,
                    "phase": "Running" if ok else "Pending",
                    "ready": ok,
                }
            )
        pool_in = pool_in_at is not None and t >= pool_in_at
        n_pool = min_r if t < 1015 or pool_in else peak
        nodes = [
            node(f"n{i}", charges[i] if i < len(charges) else "Spot", zone=("a", "b")[i % 2]) for i in range(n_pool)
        ]
        for n in nodes[min_r:]:
            n["ready"] = t >= 1020
        nodes.append(node("n-default", "PayAsYouGo", in_pool=False))
        qps_now = 0.0 if t < 1005 else (qps if 1010 <= t <= 1065 else (qps / 2 if t < 1010 else 0.0))
        samples.append(
            {
                "t": t,
                "qps": qps_now if metric else None,
                "hpa": {
                    "desired": desired,
                    "current": current,
                    "conditions": [
                        {
                            "type": "ScalingLimited",
                            "status": "True" if current == max_r else "False",
                            "reason": "TooManyReplicas" if current == max_r else "DesiredWithinRange",
                            "message": "the desired replica count is more than the maximum replica count"
                            if current == max_r
                            else "",
                        }
                    ],
                },
                "deployment": {"spec_replicas": current, "replicas": current, "ready": ready, "updated": current},
                "pods": pods,
                "nodes": nodes,
                "errors": [],
            }
        )
        t += 5.0
    history, total, failed = [], 0, 0
    for sec in range(int(START), int(STOP) + 1):
        total += int(qps)
        failed += sum(1 for f in fail_at if int(f) == sec)
        history.append(
            {
                "t": float(sec),
                "users": 24,
                "rps": qps,
                "failures_per_s": 0.0,
                "p50_ms": 3,
                "p95_ms": 9,
                "p99_ms": 20,
                "total_requests": total,
                "total_failures": failed,
            }
        )
    return {
        "version": 1,
        "meta": {
            "namespace": "seldon",
            "deployment": "fashion-mnist-default-0-tfserving-proxy",
            "hpa": {
                "name": "fashion-mnist-default-0-tfserving-proxy",
                "min_replicas": min_r,
                "max_replicas": max_r,
                "target": target,
                "target_type": "AverageValue",
                "metric": "sls_ingress_qps",
                "selector": {"sls.logstore": "nginx-ingress"},
            },
            "pool_id": "np-elastic",
            "pool_selector": {"seldon": "fashion-mnist"},
            "metric": {"name": "sls_ingress_qps", "selector": {"sls.logstore": "nginx-ingress"}},
        },
        "load": {"start": START, "hold_start": HOLD, "stop": STOP, "endpoint": "http://127.0.0.1:9/seldon"},
        "samples": samples,
        "locust": {
            "stats": {
                "requests": total,
                "failures": failed,
                "error_rate": failed / total,
                "rps": qps,
                "p50_ms": 3,
                "p95_ms": 9,
                "p99_ms": 20,
            },
            "history": history,
            "failures": [
                {"method": "POST", "name": "seldon predict", "error": "HTTP 503: no endpoints", "occurrences": failed}
            ]
            if failed
            else [],
        },
        "scale_in": {"timeout": scale_in_timeout},
    }


OPTS = VerifyOptions(pool_policy=SEED_POLICY)


def saved_model_dir(root):
    """A directory TF Serving's layout check accepts (``saved_model.pb`` + ``variables/``), made under ``root``;
    returns it. For specs and ``plan`` tests that never load the model."""
    from pathlib import Path

    model = Path(root) / "model"
    (model / "variables").mkdir(parents=True, exist_ok=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"i")
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(b"d")
    return model
