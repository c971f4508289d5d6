"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

_STRING = {"type": ["string", "null"]}
_SECRET = {"type": ["string", "null"], "format": "password"}
_OPERATOR_MODULES = (
    "node_pool",
    "model_upload",
    "volume",
    "seldon",
    "ingress",
    "smoke_test",
    "load_test",
    "verify",
    "teardown",
)


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-elastic-inference",
        "name": "Elastic inference on Alibaba Cloud ACK",
        "description": "Takes a trained model to a verified, autoscaling inference endpoint on ACK "
        "(node pool, OSS model upload, OSS-backed volume, Seldon, ingress, load test, scale verification).",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Alibaba Cloud Container Service for Kubernetes (ACK)",
                "external-doc-url": "https://www.alibabacloud.com/help/en/ack/",
                "tags": ["alibaba"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Alibaba Cloud Container Service for Kubernetes (ACK)",
                "python-modules": [
                    "elastic_inference.hooks.base",
                    "elastic_inference.hooks.ack",
                    "elastic_inference.hooks.oss",
                    "elastic_inference.hooks.kubernetes",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Alibaba Cloud Container Service for Kubernetes (ACK)",
                "python-modules": [f"elastic_inference.operators.{m}" for m in _OPERATOR_MODULES],
            }
        ],
        "sensors": [
            {
                "integration-name": "Alibaba Cloud Container Service for Kubernetes (ACK)",
                "python-modules": ["elastic_inference.sensors.node_pool", "elastic_inference.sensors.kubernetes"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Alibaba Cloud Container Service for Kubernetes (ACK)",
                "python-modules": [
                    f"elastic_inference.triggers.{m}"
                    for m in ("node_pool", "kubernetes_watch", "volume", "seldon", "ingress")
                ],
            }
        ],
        "extra-links": [
            "elastic_inference.links.ScaleReportLink",
            "elastic_inference.links.LocustReportLink",
            "elastic_inference.links.EndpointLink",
        ],
        "connection-types": [
            {
                "hook-class-name": "elastic_inference.hooks.ack.AckHook",
                "hook-name": "Alibaba Cloud (ACK / OSS)",
                "connection-type": "alibaba_ack",
                "conn-fields": {
                    "security_token": {
                        "label": "STS security token",
                        "schema": _SECRET,
                        "description": "Set with a temporary AccessKey pair from STS.",
                    },
                    "role_arn": {
                        "label": "RAM role ARN",
                        "schema": _STRING,
                        "description": "Assume this RAM role with the AccessKey pair (acs:ram::<uid>:role/<name>).",
                    },
                    "role_session_name": {"label": "RAM role session name", "schema": _STRING},
                    "region_id": {
                        "label": "Region",
                        "schema": {"type": ["string", "null"], "default": "cn-beijing"},
                    },
                    "cluster_id": {"label": "ACK cluster id", "schema": _STRING},
                    "cs_endpoint": {
                        "label": "CS endpoint override",
                        "schema": _STRING,
                        "description": "e.g. http://127.0.0.1:18080 for the sandbox; default cs.<region>.aliyuncs.com",
                    },
                    "oss_endpoint": {
                        "label": "OSS endpoint override",
                        "schema": _STRING,
                        "description": "e.g. http://127.0.0.1:18081 for the sandbox; default oss-<region>.aliyuncs.com",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra", "host"],
                    "relabeling": {"login": "AccessKey ID", "password": "AccessKey secret"},
                    "placeholders": {"login": "LTAI...", "region_id": "cn-beijing"},
                },
            }
        ],
    }
