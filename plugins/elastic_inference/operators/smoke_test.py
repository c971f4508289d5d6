"""Seed step 7's first half: send real images to the new endpoint and check the predicted classes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from elastic_inference.protocol import PROTOCOLS, predicted_classes, request_body

__all__ = ["PROTOCOLS", "PredictionSmokeTestOperator", "predicted_classes", "request_body"]


class PredictionSmokeTestOperator(BaseOperator):
    """Posts labelled sample images to ``predict_url`` and fails unless enough come back right.

    :param predict_url: the endpoint (templated; usually the ingress task's XCom ``predict_url``).
    :param samples_path: JSON file ``{"images": [...], "labels": [...]}`` of real held-out images (templated).
    :param protocol: ``seldon`` (``/api/v1.0/predictions``) or ``tfserving`` (``/v1/models/<name>:predict``).
    :param min_accuracy: fraction of samples that must be classified right.
    :param host_header: Host header to send when the ingress routes by host (templated).
    :param version_check: ``{"namespace", "pod_selector", "model_name", "version", "backend"}`` (templated, e.g.
        the rollout's promote XCom): every ready replica behind the endpoint must serve exactly ``version`` (its
        model server's status API), or the test fails naming the pods.
    :param kubernetes_conn_id: where those pods are listed.
    """

    template_fields: Sequence[str] = (
        "predict_url",
        "samples_path",
        "protocol",
        "host_header",
        "min_accuracy",
        "version_check",
    )

    def __init__(
        self,
        *,
        predict_url: str,
        samples_path: str,
        protocol: str = "seldon",
        min_accuracy: float = 0.8,
        host_header: str | None = None,
        attempts: int = 10,
        request_timeout: float = 10.0,
        version_check: dict[str, Any] | str | None = None,
        kubernetes_conn_id: str | None = "kubernetes_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.predict_url = predict_url
        self.samples_path = samples_path
        self.protocol = protocol
        self.min_accuracy = min_accuracy
        self.host_header = host_header
        self.attempts = attempts
        self.request_timeout = request_timeout
        self.version_check = version_check
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        import requests
        import tenacity

        from elastic_inference.specs import coerce

        self.min_accuracy = coerce(self.min_accuracy, "number", "min_accuracy")
        if self.protocol not in PROTOCOLS:
            raise AirflowFailException(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        samples = json.loads(Path(self.samples_path).read_text())
        images, labels = samples["images"], samples["labels"]
        headers = {"Host": self.host_header} if self.host_header else {}

        # A just-ready endpoint may still answer 502/503 for a moment while the ingress learns endpoints.
        @tenacity.retry(
            retry=tenacity.retry_if_exception_type((requests.ConnectionError, requests.Timeout, _Transient)),
            wait=tenacity.wait_exponential(multiplier=0.5, max=5),
            stop=tenacity.stop_after_attempt(self.attempts),
            before_sleep=lambda rs: self.log.info("predict not answering yet (%s); retrying", rs.outcome.exception()),
            reraise=True,
        )
        def post() -> dict[str, Any]:
            resp = requests.post(
                self.predict_url,
                json=request_body(self.protocol, images),
                headers=headers,
                timeout=self.request_timeout,
            )
            if resp.status_code in (502, 503, 504):
                raise _Transient(f"{resp.status_code} {resp.text[:200]}")
            if resp.status_code != 200:
                raise AirflowFailException(f"predict returned {resp.status_code}: {resp.text[:500]}")
            return resp.json()

        predicted = predicted_classes(self.protocol, post())
        correct = sum(p == t for p, t in zip(predicted, labels, strict=True))
        accuracy = correct / len(labels)
        self.log.info(
            "smoke test: %d/%d correct (%.0f %%) at %s", correct, len(labels), 100 * accuracy, self.predict_url
        )
        if accuracy < self.min_accuracy:
            raise AirflowFailException(
                f"only {correct} of {len(labels)} sample images were classified right ({accuracy:.0%} < "
                f"{self.min_accuracy:.0%}): predicted {predicted}, expected {labels}"
            )
        served = check_served_version(self.version_check, self.kubernetes_conn_id, self.log)
        return {
            "predict_url": self.predict_url,
            "samples": len(labels),
            "correct": correct,
            "accuracy": accuracy,
            "served": served,
        }


def check_served_version(check: Any, kubernetes_conn_id: str | None, log: Any) -> dict[str, Any] | None:
    """Fail unless every ready replica of ``check["pod_selector"]`` serves exactly ``check["version"]``."""
    from elastic_inference.hooks.kubernetes import KubeAccess, KubeHook
    from elastic_inference.rollout.versions import served_versions, summary, version_problems
    from elastic_inference.serving.base import get_backend
    from elastic_inference.specs import coerce

    spec = coerce(check, "object", "version_check", optional=True)
    if not spec:
        return None
    hook = KubeHook(KubeAccess(kubernetes_conn_id=kubernetes_conn_id))
    try:
        served = served_versions(
            hook,
            get_backend(spec.get("backend") or "seldon"),
            spec["namespace"],
            spec["pod_selector"],
            spec["model_name"],
        )
    finally:
        hook.close()
    problems = version_problems(served, int(spec["version"]), spec.get("name") or "")
    if problems:
        raise AirflowFailException(f"not every replica serves version {spec['version']}: " + "; ".join(problems))
    log.info("Every replica (%d) serves version %s", len(served), spec["version"])
    return summary(served)


class _Transient(Exception):
    """A gateway answer that means "not yet" rather than "broken"."""
