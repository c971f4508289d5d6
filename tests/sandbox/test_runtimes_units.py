"""Pure logic of the container runtimes: image resolution, path mapping, message conversions. No processes."""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import pytest

from ack_sandbox.runtimes import common, registry
from ack_sandbox.runtimes.seldon_executor import build_graph, parse_args
from ack_sandbox.runtimes.seldon_messages import (
    SeldonMicroserviceError,
    construct_response,
    extract_request,
    parse_parameters,
)
from ack_sandbox.runtimes.seldon_tfserving_proxy import resolve_endpoint
from ack_sandbox.runtimes.tfserving import parse_flags
from ack_sandbox.runtimes.tfserving_json import request_tensors, response_json
from ack_sandbox.runtimes.tfserving_model import ServingError, SignatureInfo, TensorSpecInfo

SEED_TF_ARGS = [
    "/usr/bin/tensorflow_model_server",
    "--port=7001",
    "--model_name=fashion-mnist",
    "--model_base_path=/mnt/arena/models/fashion-mnist",
]


# --- registry ---------------------------------------------------------------------------------------


def test_seed_tensorflow_serving_image_gets_the_docker_entrypoint_flags_first():
    spec = registry.resolve("tensorflow/serving:2.3.0-gpu", None, SEED_TF_ARGS, {})
    assert spec is not None and spec.family == "tensorflow-serving"
    assert spec.argv[:3] == [sys.executable, "-m", "ack_sandbox.runtimes.tensorflow_model_server"]
    flags, leftovers = parse_flags(spec.argv[3:])
    # Later flags win: gRPC on the seed's 7001, REST stays on the entrypoint's 8501.
    assert (flags.port, flags.rest_api_port) == (7001, 8501)
    assert flags.model_name == "fashion-mnist"
    assert flags.model_base_path == "/mnt/arena/models/fashion-mnist"
    assert leftovers == ["/usr/bin/tensorflow_model_server"]  # reported as "unknown argument", as the binary does
    assert spec.ports == [8501] and spec.imports_tensorflow
    assert spec.ready_path == "/v1/models/fashion-mnist"


def test_tensorflow_serving_with_binary_as_command_has_no_rest_port():
    spec = registry.resolve("docker.io/tensorflow/serving", ["/usr/bin/tensorflow_model_server"], SEED_TF_ARGS[1:], {})
    assert spec is not None
    assert spec.ports == []  # --rest_api_port defaults to 0 in the binary: REST disabled
    assert any("REST API disabled" in n for n in spec.notes)


def test_tensorflow_serving_env_defaults_and_overrides():
    spec = registry.resolve("tensorflow/serving:2.14.1", None, None, {"MODEL_NAME": "m1"})
    flags, _ = parse_flags(spec.argv[3:])
    assert flags.model_base_path == "/models/m1" and spec.env["MODEL_BASE_PATH"] == "/models"


@pytest.mark.parametrize(
    ("image", "family"),
    [
        ("registry.cn-beijing.aliyuncs.com/deepai/seldonio-tfserving-proxy_rest:1.3.0", "seldon-tfserving-proxy"),
        ("seldonio/tfserving-proxy_rest:1.3.0", "seldon-tfserving-proxy"),
        ("seldonio/tfserving-proxy:1.18.2", "seldon-tfserving-proxy"),
        ("docker.io/seldonio/tfserving-proxy:1.17.1", "seldon-tfserving-proxy"),
        ("seldonio/seldon-core-executor:1.18.2", "seldon-executor"),
        ("docker.io/seldonio/seldon-core-executor:1.17.1", "seldon-executor"),
        ("tensorflow/serving", "tensorflow-serving"),
        ("tensorflow/serving:latest-gpu", "tensorflow-serving"),
        ("hashicorp/http-echo:1.0", "http-echo"),
    ],
)
def test_known_images_resolve(image, family):
    spec = registry.resolve(image, None, ["-text=hi"] if "echo" in image else None, {})
    assert spec is not None and spec.family == family


@pytest.mark.parametrize(
    "image",
    [
        "nginx:1.25",
        "tensorflow/serving:2.3.0-devel",
        "tensorflow/serving:not-a-tag",
        "seldonio/tfserving-proxy_grpc:1.3.0",
        "seldonio/seldon-core-executor:0.1",
        "Tensorflow/Serving:2.3.0",
        "",
    ],
)
def test_unknown_or_invalid_images_are_not_runnable(image):
    assert registry.resolve(image, None, None, {}) is None


def test_unsupported_command_is_an_error_not_a_pull_failure():
    with pytest.raises(registry.UnsupportedCommand, match='exec: "sh"'):
        registry.resolve("tensorflow/serving:2.3.0", ["sh", "-c", "sleep 1"], None, {})


def test_proxy_and_executor_ports():
    proxy = registry.resolve(
        "seldonio/tfserving-proxy_rest:1.3.0", None, None, {"PREDICTIVE_UNIT_HTTP_SERVICE_PORT": "9001"}
    )
    assert proxy.ports == [9001] and proxy.env["PREDICTIVE_UNIT_IMAGE"].endswith(":1.3.0")
    executor = registry.resolve(
        "seldonio/seldon-core-executor:1.18.2",
        None,
        ["--sdep", "s", "--namespace", "n", "--predictor", "p", "--http_port", "8000", "--protocol", "seldon"],
        {},
    )
    assert executor.ports == [8000]


def test_parse_image_strips_registry_and_library():
    ref = registry.parse_image("docker.io/library/busybox:1.36@sha256:abc")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("", "busybox", "1.36", "sha256:abc")
    ref = registry.parse_image("localhost:5000/team/model:7")
    assert (ref.registry, ref.repository, ref.tag) == ("localhost:5000", "team/model", "7")


# --- common -----------------------------------------------------------------------------------------


def test_host_path_uses_the_longest_mount_prefix():
    env = {common.MOUNTS_ENV: json.dumps({"/mnt": "/data/pvc", "/mnt/arena/models": "/data/models"})}
    assert common.host_path("/mnt/arena/models/fashion-mnist", env) == "/data/models/fashion-mnist"
    assert common.host_path("/mnt/other", env) == "/data/pvc/other"
    assert common.host_path("/mnt", env) == "/data/pvc"
    assert common.host_path("/mntx/a", env) == "/mntx/a"
    assert common.host_path("/etc/x", {}) == "/etc/x"


def test_pod_ip_refuses_non_loopback():
    assert common.pod_ip({common.POD_IP_ENV: "127.0.5.2"}) == "127.0.5.2"
    with pytest.raises(SystemExit, match="loopback"):
        common.pod_ip({common.POD_IP_ENV: "10.0.0.1"})


# --- TF Serving JSON --------------------------------------------------------------------------------

SIG = SignatureInfo(
    key="serving_default",
    method_name="tensorflow/serving/predict",
    inputs={"images": TensorSpecInfo("images", "serving_default_images:0", "DT_FLOAT", [-1, 2, 2])},
    outputs={"output_0": TensorSpecInfo("output_0", "out:0", "DT_FLOAT", [-1, 3])},
)


def test_row_format_single_input_and_named_instance():
    fmt, tensors = request_tensors({"instances": [[[0, 1], [2, 3]], {"images": [[4, 5], [6, 7]]}]}, SIG)
    assert fmt == "row" and tensors["images"].shape == (2, 2, 2) and tensors["images"].dtype == np.float32


def test_columnar_format():
    fmt, tensors = request_tensors({"inputs": {"images": [[[0, 1], [2, 3]]]}}, SIG)
    assert fmt == "columnar" and tensors["images"].shape == (1, 2, 2)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "Missing 'inputs' or 'instances' key"),
        ({"instances": [], "inputs": []}, "Not both"),
        ({"instances": [[1, 2, 3]]}, "incompatible with the signature's shape [-1,2,2]"),
        ({"instances": [[[1, 2], [3]]]}, "dense, uniformly shaped"),
        ({"instances": "x"}, "Expecting 'instances' to be an list/array"),
        ({"instances": [{"other": 1}]}, "does not have named input: images"),
    ],
)
def test_bad_requests_are_invalid_argument(doc, message):
    with pytest.raises(ServingError) as info:
        request_tensors(doc, SIG)
    assert info.value.code == "INVALID_ARGUMENT" and message in info.value.message


def test_response_formats():
    out = {"output_0": np.array([[0.1, 0.2, 0.7]], dtype=np.float32)}
    assert response_json("row", out)["predictions"][0] == pytest.approx([0.1, 0.2, 0.7])
    assert response_json("columnar", out)["outputs"][0] == pytest.approx([0.1, 0.2, 0.7])
    two = {"a": np.array([1, 2]), "b": np.array([[3], [4]])}
    assert response_json("row", two)["predictions"] == [{"a": 1, "b": [3]}, {"a": 2, "b": [4]}]


# --- Seldon messages --------------------------------------------------------------------------------


def test_seldon_ndarray_and_tensor_round_trip():
    features, meta, kind = extract_request({"data": {"ndarray": [[1, 2], [3, 4]]}, "meta": {"puid": "p1"}})
    assert kind == "ndarray" and features.shape == (2, 2)
    resp = construct_response(kind, meta, np.array([[0.1, 0.9]]))
    assert resp["data"] == {"names": ["t:0", "t:1"], "ndarray": [[0.1, 0.9]]} and resp["meta"]["puid"] == "p1"
    features, meta, kind = extract_request({"data": {"tensor": {"shape": [1, 2, 2], "values": [1, 2, 3, 4]}}})
    assert kind == "tensor" and features.shape == (1, 2, 2)
    resp = construct_response(kind, meta, np.array([[0.1, 0.9]]))
    assert resp["data"]["tensor"] == {"shape": [1, 2], "values": [0.1, 0.9]}


def test_seldon_json_str_bin_data():
    assert extract_request({"jsonData": {"a": 1}})[0] == {"a": 1}
    assert construct_response("jsonData", {}, {"x": 1}) == {"jsonData": {"x": 1}, "meta": {}}
    assert construct_response("ndarray", {}, "healthy") == {"strData": "healthy", "meta": {}}
    raw = extract_request({"binData": base64.b64encode(b"\x00\x01").decode()})[0]
    assert raw == b"\x00\x01"


@pytest.mark.parametrize("message", [{"nodata": 1}, [1, 2], {"data": {"tensor": {"shape": [3], "values": [1]}}}])
def test_seldon_bad_data_is_400_with_seldon_status(message):
    with pytest.raises(SeldonMicroserviceError) as info:
        extract_request(message)
    body = info.value.to_dict()
    assert info.value.status_code == 400
    assert body["status"]["status"] == 1 and body["status"]["code"] == -1
    assert body["status"]["reason"] == "MICROSERVICE_BAD_DATA"


def test_predictive_unit_parameters_types():
    raw = json.dumps(
        [
            {"name": "rest_endpoint", "type": "STRING", "value": "http://127.x.x.x:8501"},
            {"name": "n", "type": "INT", "value": "3"},
            {"name": "f", "type": "FLOAT", "value": "0.5"},
            {"name": "b", "type": "BOOL", "value": "true"},
            {"name": "j", "type": "JSON", "value": '{"k": [1]}'},
        ]
    )
    assert parse_parameters(raw) == {
        "rest_endpoint": "http://127.x.x.x:8501",
        "n": 3,
        "f": 0.5,
        "b": True,
        "j": {"k": [1]},
    }
    with pytest.raises(ValueError, match="cannot convert"):
        parse_parameters(json.dumps([{"name": "n", "type": "INT", "value": "x"}]))


def test_rest_endpoint_pod_local_hosts_resolve_to_the_pod_ip():
    assert resolve_endpoint("http://127.x.x.x:8501", "127.0.9.9") == "http://127.0.9.9:8501"
    assert resolve_endpoint("http://localhost:8501/", "127.0.9.9") == "http://127.0.9.9:8501"
    assert resolve_endpoint("http://127.0.3.3:8501", "127.0.9.9") == "http://127.0.3.3:8501"


def test_executor_graph_defaults_and_flags():
    graph = {
        "name": "a",
        "type": "TRANSFORMER",
        "children": [{"name": "b", "endpoint": {"service_host": "localhost", "service_port": 9005}}],
    }
    root = build_graph(graph, "127.0.9.9")
    assert (root.host, root.port, root.type) == ("127.0.9.9", 9000, "TRANSFORMER")
    assert (root.children[0].port, root.children[0].type) == (9005, "MODEL")
    ns = parse_args(["-sdep", "s", "--namespace=n", "--predictor", "p", "--http_port", "8000"])
    assert (ns.sdep, ns.namespace, ns.http_port) == ("s", "n", 8000)
    with pytest.raises(SystemExit) as info:
        parse_args(["--port", "8000"])
    assert info.value.code == 2


def test_registry_passes_the_daemons_zygote_to_every_python_runtime(monkeypatch):
    from ack_sandbox.runtimes.tf_zygote import RUNTIME_MODULES, ZYGOTE_ENV

    monkeypatch.delenv(ZYGOTE_ENV, raising=False)
    assert ZYGOTE_ENV not in registry.resolve("tensorflow/serving:2.3.0", None, None, {}).env
    monkeypatch.setenv(ZYGOTE_ENV, "/tmp/x.sock")
    assert registry.resolve("tensorflow/serving:2.3.0", None, None, {}).env[ZYGOTE_ENV] == "/tmp/x.sock"
    proxy = registry.resolve("seldonio/tfserving-proxy_rest:1.3.0", None, None, {})
    executor = registry.resolve("seldonio/seldon-core-executor:1.14.0", None, ["--sdep", "s"], {})
    for spec, module in ((proxy, "seldon_tfserving_proxy"), (executor, "seldon_executor")):
        assert spec.env[ZYGOTE_ENV] == "/tmp/x.sock"
        # the launcher imports nothing heavy and runs the module (as a zygote fork when one is up)
        assert spec.argv[1:4] == ["-m", "ack_sandbox.runtimes.launcher", f"ack_sandbox.runtimes.{module}"]
        assert spec.argv[3] in RUNTIME_MODULES
