"""The rollout: how a new version replaces the one serving (canary analysis, promote or roll back).

``strategy``: ``auto`` (canary when a version already serves, else the first-deployment path), ``canary`` (the
same, said explicitly), ``direct`` (patch the serving object in place: a rolling update, no analysis).
``steps`` are canary weights in percent, each held ``step_seconds`` under load; the bounds compare the canary
with the stable version over the same window. ``rollback_to`` puts a previous version (already in OSS) back
through the same canary path.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from elastic_inference.specs._base import Spec, spec_field

STRATEGIES = ("auto", "canary", "direct")

# The keys of the DAG's ``rollout`` object param (all of them).
PARAM_KEYS = [
    "strategy",
    "steps",
    "step_seconds",
    "analysis_rps",
    "max_error_rate",
    "max_p95_ratio",
    "max_p95_increase_ms",
    "min_agreement",
    "require_approval",
    "approval_timeout_seconds",
    "rollback_to",
    "prober_rps",
    "prober_max_seconds",
]


@dataclasses.dataclass(frozen=True)
class RolloutSpec(Spec):
    """What the canary analysis, the approval and the promotion do."""

    strategy: str = spec_field(
        "auto",
        "string",
        enum=STRATEGIES,
        doc="auto: canary when a version already serves (first deployment: deploy directly); canary; direct "
        "(rolling update without analysis).",
    )
    steps: list[int] = spec_field(
        [10, 50],
        "array",
        minItems=1,
        maxItems=10,
        items={"type": "integer", "minimum": 1, "maximum": 100},
        doc="Canary weights in percent (1-100), ascending.",
    )
    step_seconds: float = spec_field(30, "number", exclusiveMinimum=0, maximum=3600, doc="Seconds each step lasts.")
    analysis_rps: float = spec_field(
        10,
        "number",
        exclusiveMinimum=0,
        maximum=200,
        doc="Labelled requests per second sent to each of canary and stable during a step (pinned by header).",
    )
    max_error_rate: float = spec_field(
        0.01, "number", minimum=0, maximum=1, doc="The canary fails when its error rate is above this."
    )
    max_p95_ratio: float | None = spec_field(
        1.5,
        "number",
        optional=True,
        minimum=1,
        doc="The canary fails when its p95 is above this multiple of the stable p95 (null: no check) ...",
    )
    max_p95_increase_ms: float = spec_field(
        100,
        "number",
        minimum=0,
        doc="... and also more than this many ms above it (a floor, so fast models are not judged on jitter).",
    )
    min_agreement: float = spec_field(
        0.9,
        "number",
        minimum=0,
        maximum=1,
        doc="The canary fails when fewer of its predictions than this agree with the labelled samples.",
    )
    require_approval: bool = spec_field(
        False, "boolean", doc="Ask a human (Airflow HITL approval) before promoting, showing the canary's figures."
    )
    approval_timeout_seconds: float = spec_field(
        3600, "number", exclusiveMinimum=0, doc="How long the approval waits before the run fails."
    )
    rollback_to: int | None = spec_field(
        None,
        "integer",
        optional=True,
        minimum=1,
        doc="Put this previous version (already in OSS) back through the canary path; nothing is uploaded.",
    )
    prober_rps: float = spec_field(
        5, "number", exclusiveMinimum=0, maximum=100, doc="Steady requests per second of the background prober."
    )
    prober_max_seconds: float = spec_field(
        1800, "number", exclusiveMinimum=0, doc="Hard limit of one prober segment (it also stops with its task)."
    )

    label_prefix: ClassVar[str] = "rollout."

    def problems(self) -> list[str]:
        p = super().problems()
        bad = [s for s in self.steps if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 100]
        if bad:
            p.append(f"rollout.steps must be canary weights in percent (1-100), got {self.steps}")
        elif list(self.steps) != sorted(self.steps):
            p.append(f"rollout.steps must be ascending (traffic only grows before promotion), got {self.steps}")
        if self.strategy == "direct" and self.rollback_to is not None:
            p.append("rollout.rollback_to goes through the canary path: use strategy auto or canary, not direct")
        return p

    @property
    def weights(self) -> list[int]:
        return [int(s) for s in self.steps]
