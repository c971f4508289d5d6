"""The load test: its shape (ramp, hold; offered RPS = qps_target x max_replicas x fill_factor), its SLO and how
long the cluster is recorded afterwards."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from elastic_inference.specs._base import Spec, spec_field
from elastic_inference.specs.serving import (
    DEFAULT_MAX_REPLICAS,
    DEFAULT_QPS_TARGET,
    MAX_REPLICAS_SCHEMA,
    QPS_TARGET_SCHEMA,
)

MAX_OFFERED_RPS = 50_000  # what one load test may offer (locust users = offered RPS / rps_per_user)
MAX_USERS_PER_PROCESS = 5_000  # locust users one process (master alone, or each worker) is asked to run

# The keys of the DAG's ``load_test`` object param (the others come from top-level params or stay as defaulted).
PARAM_KEYS = [
    "ramp_seconds",
    "ramp_steps",
    "hold_seconds",
    "fill_factor",
    "rps_per_user",
    "workers",
    "record_interval",
    "scale_in_timeout",
    "pool_scale_in_timeout",
    "metric_lag_seconds",
]


@dataclasses.dataclass(frozen=True)
class LoadTestSpec(Spec):
    """What ``LocustLoadTestOperator`` runs and ``ScaleVerificationOperator`` allows for."""

    ramp_seconds: float = spec_field(60, "number", minimum=0, maximum=3600, doc="Seconds to ramp up to the full load.")
    hold_seconds: float = spec_field(
        180, "number", exclusiveMinimum=0, maximum=6 * 3600, doc="Seconds the full load is held."
    )
    fill_factor: float = spec_field(
        0.5, "number", exclusiveMinimum=0, maximum=1, doc="Offered RPS as a fraction of qps_target x max_replicas."
    )
    rps_per_user: float = spec_field(
        2, "number", exclusiveMinimum=0, maximum=1000, doc="Requests per second of one user."
    )
    workers: int = spec_field(
        0, "integer", minimum=0, maximum=32, doc="0: one locust process; N: a master and N worker processes."
    )
    record_interval: float = spec_field(
        5, "number", exclusiveMinimum=0, maximum=600, doc="Seconds between timeline samples."
    )
    scale_in_timeout: float = spec_field(
        600,
        "number",
        minimum=0,
        maximum=7200,
        doc="After the load, record (and allow) this long for the replicas' scale-in.",
    )
    pool_scale_in_timeout: float | None = spec_field(
        None,
        "number",
        optional=True,
        minimum=0,
        maximum=7200,
        doc="After the load, record this long at most for the elastic pool to release the nodes the load made it "
        "add (their cost after the load is in the report); empty: scale_in_timeout; 0: stop with the replicas.",
    )
    metric_lag_seconds: float = spec_field(
        25, "number", minimum=0, maximum=600, doc="How far the QPS metric trails the load (SLS window + delay)."
    )
    qps_target: float = spec_field(
        DEFAULT_QPS_TARGET,
        "number",
        param="qps_target",
        **QPS_TARGET_SCHEMA,
        doc="The HPA's sls_ingress_qps target (sizes the load).",
    )
    max_replicas: int = spec_field(
        DEFAULT_MAX_REPLICAS,
        "integer",
        param="max_replicas",
        **MAX_REPLICAS_SCHEMA,
        doc="The HPA's maxReplicas (sizes the load).",
    )
    slo_p95_ms: float | None = spec_field(
        500,
        "number",
        param="slo_p95_ms",
        optional=True,
        exclusiveMinimum=0,
        doc="Load test fails above this p95 latency.",
    )
    slo_error_rate: float | None = spec_field(
        0.01,
        "number",
        param="slo_max_error_rate",
        optional=True,
        minimum=0,
        maximum=1,
        doc="Load test error-rate budget.",
    )
    target_rps: float | None = spec_field(
        None,
        "number",
        optional=True,
        exclusiveMinimum=0,
        maximum=MAX_OFFERED_RPS,
        doc="Offered RPS (instead of qps_target x max_replicas x fill_factor).",
    )
    ramp_steps: int = spec_field(3, "integer", minimum=1, maximum=100, doc="Steps of the ramp.")
    max_samples: int = spec_field(200, "integer", minimum=1, maximum=100_000, doc="How many images to cycle through.")
    flatten_images: bool = spec_field(False, "boolean", doc="Send each image as one flat row.")
    progress_interval: float = spec_field(
        5, "number", exclusiveMinimum=0, maximum=600, doc="Seconds between progress lines."
    )
    startup_grace: float = spec_field(
        60,
        "number",
        minimum=0,
        maximum=3600,
        doc="Seconds allowed beyond the shape's run time before locust is stopped.",
    )

    label_prefix: ClassVar[str] = "load_test."

    @property
    def pool_wait(self) -> float:
        """Seconds after the load to keep recording for the pool's nodes (``pool_scale_in_timeout``)."""
        return self.scale_in_timeout if self.pool_scale_in_timeout is None else self.pool_scale_in_timeout

    @property
    def offered_rps(self) -> float:
        return self.target_rps or self.qps_target * self.max_replicas * self.fill_factor

    def problems(self) -> list[str]:
        p = super().problems()
        offered = self.offered_rps
        if offered > MAX_OFFERED_RPS:
            p.append(
                f"the load test would offer {offered:g} RPS (qps_target {self.qps_target:g} x max_replicas"
                f" {self.max_replicas} x load_test.fill_factor {self.fill_factor:g}), over {MAX_OFFERED_RPS}: lower"
                " qps_target or load_test.fill_factor, or set load_test.target_rps"
            )
        users = offered / self.rps_per_user if self.rps_per_user > 0 else 0
        processes = max(1, self.workers)
        if users / processes > MAX_USERS_PER_PROCESS:
            p.append(
                f"the load test needs {users:.0f} locust users ({offered:g} RPS / load_test.rps_per_user"
                f" {self.rps_per_user:g}) on {processes} process(es), over {MAX_USERS_PER_PROCESS} each: raise"
                " load_test.rps_per_user or load_test.workers"
            )
        return p
