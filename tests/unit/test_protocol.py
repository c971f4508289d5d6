"""The prediction protocol, written once (smoke test, load-test payload, locustfile)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from elastic_inference.protocol import predicted_class, predicted_classes, request_body, request_path

REPO = Path(__file__).resolve().parents[2]


def test_requests_in_both_protocols() -> None:
    assert request_body("seldon", [[1.0]]) == {"data": {"ndarray": [[1.0]]}}
    assert request_body("tfserving", [[1.0]]) == {"instances": [[1.0]]}
    assert request_body("tfserving", [[1.0]], "serving_default")["signature_name"] == "serving_default"
    assert request_path("seldon") == "/api/v1.0/predictions"
    assert request_path("tfserving", "fm") == "/v1/models/fm:predict"
    assert request_path("seldon", path="custom") == "/custom"
    with pytest.raises(ValueError, match="model_name is required"):
        request_path("tfserving")
    with pytest.raises(ValueError, match="protocol must be one of seldon, tfserving"):
        request_body("grpc", [])


def test_responses_in_every_shape() -> None:
    assert predicted_classes("seldon", {"data": {"ndarray": [[0.1, 0.9], [0.8, 0.2]]}}) == [1, 0]
    assert predicted_classes("tfserving", {"predictions": [[0.1, 0.9], [0.8, 0.2]]}) == [1, 0]
    tensor = {"data": {"tensor": {"shape": [2, 3], "values": [0, 1, 0, 0.5, 0, 0.1]}}}
    assert predicted_classes("seldon", tensor) == [1, 0] and predicted_class("seldon", tensor) == 1
    assert predicted_class("tfserving", {"predictions": [[[0.0, 0.2, 0.7]]]}) == 2  # singleton nesting
    assert predicted_class("tfserving", {"predictions": [{"probs": [0.3, 0.7]}]}) == 1  # multi-output model
    assert predicted_class("tfserving", {"predictions": [4]}) == 4  # a class id as is


def test_the_protocol_module_is_light_enough_for_the_locust_process() -> None:
    code = (
        "import sys; import elastic_inference.protocol; "
        "heavy = [m for m in ('airflow', 'numpy', 'locust', 'gevent') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "plugins")},
    ).stdout
    assert out.strip() == "[]"
