"""The ``elastic_inference`` DAG's run parameters: JSON schemas for the UI trigger form, and the checks run
before anything in the cloud is touched. Both come from the run specs (``elastic_inference.specs``): each
default, range and enum is written once, there."""

from __future__ import annotations

from typing import Any

from elastic_inference.specs.model import DNS_LABEL, OSS_BUCKET
from elastic_inference.specs.run import param_specs, resolve, with_object_defaults

__all__ = ["DNS_LABEL", "OSS_BUCKET", "PARAM_SPECS", "check_run_config", "with_object_defaults"]

# name -> (default, JSON schema keywords, description). The DAG wraps these in airflow.sdk.Param.
PARAM_SPECS: dict[str, tuple[Any, dict[str, Any], str]] = param_specs()


def check_run_config(params: dict[str, Any]) -> list[str]:
    """Every problem with a run's params (empty = valid): each spec's ``problems()`` and the cross-spec rules."""
    return resolve(params)[1]
