"""The runtimes as real processes on one pod IP, started from the seed's images/args through the registry.

One TF Serving process is started *before* the model exists (it must log TF Serving's missing-base-path
error and keep polling), then the test run's trained model is written into the mounted directory (staged and
renamed, as the training writes it), so the poller, the load and the REST API are all exercised. The Seldon
executor and tfserving-proxy run next to it, configured the way the Seldon operator configures them, and
predictions go through the Seldon REST protocol.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ack_sandbox.runtimes import common, registry

REPO = Path(__file__).resolve().parents[2]
TF_IMAGE = "tensorflow/serving:2.3.0-gpu"
PROXY_IMAGE = "registry.cn-beijing.aliyuncs.com/deepai/seldonio-tfserving-proxy_rest:1.3.0"
EXECUTOR_IMAGE = "docker.io/seldonio/seldon-core-executor:1.18.2"
SEED_TF_ARGS = [
    "/usr/bin/tensorflow_model_server",
    "--port=7001",
    "--model_name=fashion-mnist",
    "--model_base_path=/mnt/arena/models/fashion-mnist",
]
SEED_GRAPH = {
    "name": "tfserving-proxy",
    "endpoint": {"type": "REST", "service_host": "localhost", "service_port": 9000, "httpPort": 9000},
    "type": "MODEL",
    "children": [],
    "parameters": [
        {"name": "rest_endpoint", "type": "STRING", "value": "http://127.x.x.x:8501"},
        {"name": "model_name", "type": "STRING", "value": "fashion-mnist"},
        {"name": "signature_name", "type": "STRING", "value": "serving_default"},
    ],
}
START_DEADLINE = 120.0  # seconds; TF import is ~5-10 s, more on a loaded 2-core machine


class Container:
    """One runtime process with the env the kubelet gives it; output captured as the container log."""

    def __init__(self, spec: registry.RuntimeSpec, pod_ip: str, mounts: dict[str, str], log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        env = {**os.environ, **spec.env, common.POD_IP_ENV: pod_ip, common.MOUNTS_ENV: json.dumps(mounts)}
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(spec.argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd="/")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, deadline: float = START_DEADLINE) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if text in self.logs():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"{text!r} not logged by {self.spec.family} (rc={self.proc.poll()}):\n{self.logs()[-3000:]}"
        )

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            # TF Serving ignores SIGTERM as the real binary does (PID 1, no handler); SIGINT stops it
            self.proc.send_signal(signal.SIGINT if self.spec.family == "tensorflow-serving" else signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


def http(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_http(url: str, container: Container, deadline: float = START_DEADLINE) -> tuple[int, Any]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if container.proc.poll() is not None:
            raise AssertionError(
                f"{container.spec.family} exited rc={container.proc.returncode}:\n{container.logs()[-3000:]}"
            )
        try:
            status, body = http("GET", url)
            if status == 200:
                return status, body
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {deadline}s:\n{container.logs()[-3000:]}")


def argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def place_version(source: Path, base_path: Path, version: int) -> Path:
    """Copy a SavedModel version folder to ``<base_path>/<version>`` as the training writes one: staged beside it,
    then renamed, so TF Serving's poller never sees a half-written version."""
    staging = base_path / f".{version}.staging"
    base_path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, staging)
    return staging.rename(base_path / str(version))


@pytest.fixture(scope="module")
def pod_ip() -> str:
    ip = f"127.0.{random.randint(100, 250)}.{random.randint(2, 250)}"
    import socket

    with socket.socket() as s:  # the whole 127/8 is loopback on Linux; check this one binds
        s.bind((ip, 0))
    return ip


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory):
    """One pre-imported TensorFlow for the tests that need extra TF Serving processes."""
    from ack_sandbox.runtimes import tf_zygote

    work = tmp_path_factory.mktemp("zygote")
    z = tf_zygote.start(work / "z.sock", work / "zygote.log")
    yield z
    assert z.stop() == 0


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory, pod_ip: str, trained_savedmodel: Path):
    """TF Serving started on an empty volume, then the trained model written into it; proxy + executor alongside."""
    root = tmp_path_factory.mktemp("pod")
    volume = root / "pvc"  # what the PVC mounted at /mnt holds
    mounts = {"/mnt": str(volume)}
    tf_spec = registry.resolve(TF_IMAGE, None, SEED_TF_ARGS, {})
    tfs = Container(tf_spec, pod_ip, mounts, root / "tfserving.log")
    started: list[Container] = [tfs]
    try:
        # Nothing at /mnt/arena/models/fashion-mnist yet: TF Serving logs it and keeps polling.
        tfs.wait_for_log("Could not find base path")
        assert tfs.proc.poll() is None
        # The run's one training, its model placed the way the training writes it
        trained = json.loads((trained_savedmodel / "train.json").read_text())
        trained["path"] = str(place_version(Path(trained["path"]), volume / "arena" / "models" / "fashion-mnist", 1))
        _, status = wait_http(f"http://{pod_ip}:8501/v1/models/fashion-mnist", tfs)

        engine_predictor = base64.b64encode(json.dumps({"name": "predictor", "graph": SEED_GRAPH}).encode()).decode()
        proxy_env = {
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": "9000",
            "PREDICTIVE_UNIT_PARAMETERS": json.dumps(SEED_GRAPH["parameters"]),
            "PREDICTIVE_UNIT_ID": "tfserving-proxy",
            "SELDON_LOG_LEVEL": "DEBUG",
        }
        proxy = Container(registry.resolve(PROXY_IMAGE, None, None, proxy_env), pod_ip, mounts, root / "proxy.log")
        started.append(proxy)
        executor_args = [
            "--sdep",
            "fashion-mnist-ecs",
            "--namespace",
            "default",
            "--predictor",
            "predictor",
            "--http_port",
            "8000",
            "--grpc_port",
            "5001",
            "--protocol",
            "seldon",
            "--prometheus_path",
            "/prometheus",
            "--server_type",
            "rpc",
            "--log_work_buffer_size",
            "10000",
            "--log_write_timeout_ms",
            "2000",
            "--full_health_checks=false",
        ]
        executor = Container(
            registry.resolve(EXECUTOR_IMAGE, None, executor_args, {"ENGINE_PREDICTOR": engine_predictor}),
            pod_ip,
            mounts,
            root / "executor.log",
        )
        started.append(executor)
        wait_http(f"http://{pod_ip}:9000/ready", proxy)
        wait_http(f"http://{pod_ip}:8000/ready", executor)
        yield {
            "ip": pod_ip,
            "tfs": tfs,
            "proxy": proxy,
            "executor": executor,
            "trained": trained,
            "status": status,
            "volume": volume,
        }
    finally:
        for c in reversed(started):
            c.stop()


def test_training_exports_a_versioned_saved_model_that_beats_90_percent(pod):
    trained = pod["trained"]
    assert trained["metrics"]["accuracy"] >= 0.9
    assert Path(trained["path"], "saved_model.pb").is_file()
    assert Path(trained["path"]).name == "1" and Path(trained["path"]).parent.name == "fashion-mnist"


def test_model_status_is_available_only_after_the_files_appear(pod):
    assert pod["status"]["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    logs = pod["tfs"].logs()
    assert "unknown argument: /usr/bin/tensorflow_model_server" in logs
    assert logs.index("Could not find base path") < logs.index("Successfully loaded servable version")


def test_metadata_describes_the_serving_default_signature(pod):
    status, body = http("GET", f"http://{pod['ip']}:8501/v1/models/fashion-mnist/metadata")
    assert status == 200
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    dims = [d["size"] for d in sig["inputs"]["images"]["tensor_shape"]["dim"]]
    assert dims == ["-1", "28", "28"]
    assert body["model_spec"] == {"name": "fashion-mnist", "signature_name": "", "version": "1"}


def _sample(n: int = 16):
    sys.path.insert(0, str(REPO / "include"))
    try:
        from training.data import sample_images
    finally:
        sys.path.remove(str(REPO / "include"))
    return sample_images(n)


def test_direct_predict_row_and_columnar_classify_real_images(pod):
    images, labels = _sample()
    status, body = http(
        "POST",
        f"http://{pod['ip']}:8501/v1/models/fashion-mnist:predict",
        {"signature_name": "serving_default", "instances": images},
    )
    assert status == 200
    predicted = [argmax(p) for p in body["predictions"]]
    assert sum(p == y for p, y in zip(predicted, labels)) >= 13, (predicted, labels)
    assert all(abs(sum(p) - 1.0) < 1e-3 for p in body["predictions"])  # softmax probabilities
    status, col = http(
        "POST", f"http://{pod['ip']}:8501/v1/models/fashion-mnist/versions/1:predict", {"inputs": images[:2]}
    )
    assert status == 200 and [argmax(p) for p in col["outputs"]] == predicted[:2]


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        ("fashion-mnist:predict", {"instances": [[1.0, 2.0, 3.0]]}, 400, "incompatible with the signature's shape"),
        ("fashion-mnist:predict", b"{not json", 400, "JSON Parse error"),
        ("fashion-mnist:predict", {"images": []}, 400, "Missing 'inputs' or 'instances' key"),
        (
            "fashion-mnist:predict",
            {"signature_name": "nope", "instances": [[0]]},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        ("other:predict", {"instances": [[0]]}, 404, "Servable not found for request: Latest(other)"),
        (
            "fashion-mnist/versions/7:predict",
            {"instances": [[0]]},
            404,
            "Servable not found for request: Specific(fashion-mnist, 7)",
        ),
        (
            "fashion-mnist:explode",
            {"instances": [[0]]},
            400,
            "Malformed request: POST /v1/models/fashion-mnist:explode",
        ),
    ],
)
def test_tf_serving_errors_use_its_json_shape_and_codes(pod, path, body, code, message):
    raw = body if isinstance(body, bytes) else None
    status, reply = http("POST", f"http://{pod['ip']}:8501/v1/models/{path}", None if raw else body, raw=raw)
    assert status == code
    assert set(reply) == {"error"} and message in reply["error"]


def test_seldon_rest_through_executor_and_proxy_gives_the_same_classes(pod):
    images, labels = _sample(8)
    _, direct = http("POST", f"http://{pod['ip']}:8501/v1/models/fashion-mnist:predict", {"instances": images})
    expected = [argmax(p) for p in direct["predictions"]]

    status, body = http("POST", f"http://{pod['ip']}:8000/api/v1.0/predictions", {"data": {"ndarray": images}})
    assert status == 200, body
    assert body["data"]["names"] == [f"t:{i}" for i in range(10)]
    assert [argmax(p) for p in body["data"]["ndarray"]] == expected
    assert body["meta"]["requestPath"] == {"tfserving-proxy": PROXY_IMAGE}

    flat = [v for img in images[:2] for row in img for v in row]
    status, body = http(
        "POST",
        f"http://{pod['ip']}:8000/api/v1.0/predictions",
        {"data": {"tensor": {"shape": [2, 28, 28], "values": flat}}},
    )
    assert status == 200 and body["data"]["tensor"]["shape"] == [2, 10]
    values = body["data"]["tensor"]["values"]
    assert [argmax(values[i * 10 : (i + 1) * 10]) for i in range(2)] == expected[:2]

    # The model unit's own endpoint answers the same (what the executor calls).
    status, unit = http("POST", f"http://{pod['ip']}:9000/predict", {"data": {"ndarray": images[:1]}})
    assert status == 200 and argmax(unit["data"]["ndarray"][0]) == expected[0]


def test_seldon_error_paths(pod):
    base = f"http://{pod['ip']}:8000/api/v1.0/predictions"
    # Not a SeldonMessage: the proxy's 400 MICROSERVICE_BAD_DATA comes back through the executor as is.
    status, body = http("POST", base, {"nodata": 1})
    assert status == 400
    assert body["status"]["reason"] == "MICROSERVICE_BAD_DATA" and body["status"]["status"] == 1
    # Wrong shape: TF Serving's 400 is returned by TfServingProxy.predict as jsonData with HTTP 200.
    status, body = http("POST", base, {"data": {"ndarray": [[1.0, 2.0]]}})
    assert status == 200 and "incompatible with the signature's shape" in body["jsonData"]["error"]
    # jsonData is posted to TF Serving untouched and its reply comes back untouched.
    images, _ = _sample(1)
    status, body = http("POST", base, {"jsonData": {"instances": images}})
    assert status == 200 and len(body["jsonData"]["predictions"][0]) == 10
    status, body = http("GET", f"http://{pod['ip']}:9000/health/ping")
    assert (status, body) == (200, "pong")


def test_executor_tensorflow_protocol_fronts_tf_serving_directly(pod, tmp_path):
    graph = {
        "name": "fashion-mnist",
        "type": "MODEL",
        "endpoint": {"type": "REST", "service_host": "localhost", "service_port": 8501},
    }
    predictor = base64.b64encode(json.dumps({"name": "p", "graph": graph}).encode()).decode()
    args = [
        "--sdep",
        "tf",
        "--namespace",
        "default",
        "--predictor",
        "p",
        "--http_port",
        "8001",
        "--protocol",
        "tensorflow",
    ]
    c = Container(
        registry.resolve(EXECUTOR_IMAGE, None, args, {"ENGINE_PREDICTOR": predictor}), pod["ip"], {}, tmp_path / "log"
    )
    try:
        wait_http(f"http://{pod['ip']}:8001/ready", c)
        images, _ = _sample(3)
        _, direct = http("POST", f"http://{pod['ip']}:8501/v1/models/fashion-mnist:predict", {"instances": images})
        status, body = http("POST", f"http://{pod['ip']}:8001/v1/models/fashion-mnist:predict", {"instances": images})
        assert status == 200 and body == direct
        status, body = http("GET", f"http://{pod['ip']}:8001/v1/models/fashion-mnist")
        assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
        status, body = http("POST", f"http://{pod['ip']}:8001/v1/models/nope:predict", {"instances": images})
        assert status == 500 and "Failed to find model nope" in body["status"]["info"]
    finally:
        assert c.stop() == 0


def test_new_version_is_loaded_then_the_old_one_unloaded(pod):
    base_path = pod["volume"] / "arena" / "models" / "fashion-mnist"
    place_version(base_path / "1", base_path, 2)
    url = f"http://{pod['ip']}:8501/v1/models/fashion-mnist"
    end = time.monotonic() + 60
    states: dict[str, str] = {}
    while time.monotonic() < end:
        _, body = http("GET", url)
        states = {v["version"]: v["state"] for v in body["model_version_status"]}
        if states == {"1": "END", "2": "AVAILABLE"}:
            break
        time.sleep(0.2)
    assert states == {"1": "END", "2": "AVAILABLE"}, pod["tfs"].logs()[-2000:]
    images, _ = _sample(1)
    status, _ = http("POST", f"{url}/versions/2:predict", {"instances": images})
    assert status == 200
    status, body = http("POST", f"{url}/versions/1:predict", {"instances": images})
    assert status == 404 and "Specific(fashion-mnist, 1)" in body["error"]
    status, body = http("GET", f"{url}/metadata")
    assert body["model_spec"]["version"] == "2"


def test_missing_model_base_path_flag_prints_usage_and_exits_255(tmp_path, pod_ip):
    spec = registry.resolve("tensorflow/serving:2.3.0", ["/usr/bin/tensorflow_model_server"], ["--port=7001"], {})
    c = Container(spec, pod_ip, {}, tmp_path / "log")
    assert c.proc.wait(timeout=60) == 255
    c.stop()
    assert "usage: tensorflow_model_server" in c.logs()


def test_unloadable_model_aborts_like_tf_check_failure(tmp_path, pod_ip, zygote):
    bad = tmp_path / "models" / "broken" / "1"
    bad.mkdir(parents=True)
    (bad / "saved_model.pb").write_bytes(b"\x08\x01garbage-not-a-saved-model")
    # MODEL_NAME feeds the image entrypoint's --model_name and --model_base_path=$MODEL_BASE_PATH/$MODEL_NAME.
    spec = registry.resolve(
        "tensorflow/serving:2.3.0", None, ["--rest_api_port=8503"], {"MODEL_NAME": "broken", **zygote.env()}
    )
    c = Container(spec, pod_ip, {"/models": str(tmp_path / "models")}, tmp_path / "log")
    assert c.proc.wait(timeout=START_DEADLINE) == 134
    c.stop()
    logs = c.logs()
    assert "Loading servable: {name: broken version: 1} failed:" in logs
    assert "Some servables were not available" in logs


def test_zygote_forked_container_serves_and_dies_with_its_launcher(pod, zygote, tmp_path):
    """The start-time optimisation: the container process is a launcher; TF Serving runs in a zygote fork."""
    spec = registry.resolve(TF_IMAGE, None, [*SEED_TF_ARGS, "--rest_api_port=8502"], zygote.env())
    mounts = {"/mnt": str(pod["volume"])}
    first = Container(spec, pod["ip"], mounts, tmp_path / "c1.log")
    url = f"http://{pod['ip']}:8502/v1/models/fashion-mnist"
    _, body = wait_http(url, first)
    assert any(v["state"] == "AVAILABLE" for v in body["model_version_status"])
    images, _ = _sample(2)
    status, reply = http("POST", f"{url}:predict", {"instances": images})
    assert status == 200 and len(reply["predictions"]) == 2
    assert "Successfully loaded servable version" in first.logs()  # the fork writes to the container log
    assert first.stop() == 0  # SIGTERM forwarded, child drained and exited 0

    # A launcher killed outright (grace period over) takes its forked server with it.
    second = Container(spec, pod["ip"], mounts, tmp_path / "c2.log")
    wait_http(url, second)
    second.proc.kill()
    second.proc.wait(timeout=10)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            http("GET", url)
        except (urllib.error.URLError, ConnectionError, OSError):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the forked TF Serving outlived its killed launcher")
    second.stop()


def test_sigterm_stops_each_container_gracefully_and_executor_reports_the_missing_unit(pod):
    proxy, executor, tfs = pod["proxy"], pod["executor"], pod["tfs"]
    # preStop's /pause takes the executor out of readiness first.
    assert http("GET", f"http://{pod['ip']}:8000/pause")[0] == 200
    assert http("GET", f"http://{pod['ip']}:8000/ready")[0] == 503
    assert http("GET", f"http://{pod['ip']}:8000/unpause")[0] == 200
    assert http("GET", f"http://{pod['ip']}:8000/ready")[0] == 200
    assert proxy.stop() == 0
    assert "seldon-tfserving-proxy stopped" in proxy.logs()
    status, _ = http("GET", f"http://{pod['ip']}:8000/ready")
    assert status == 503
    status, body = http("POST", f"http://{pod['ip']}:8000/api/v1.0/predictions", {"data": {"ndarray": [[0]]}})
    assert status == 500 and body["status"]["code"] == 500 and f"{pod['ip']}:9000" in body["status"]["info"]
    assert executor.stop() == 0
    tfs.proc.send_signal(signal.SIGTERM)  # ignored: the real server serves until the kubelet's SIGKILL
    tfs.wait_for_log("SIGTERM ignored", deadline=30)
    assert http("GET", f"http://{pod['ip']}:8501/v1/models/fashion-mnist")[0] == 200 and tfs.proc.poll() is None
    assert tfs.stop() == 0
    assert "tensorflow_model_server stopped" in tfs.logs()


def test_http_echo_container(tmp_path, pod_ip):
    spec = registry.resolve("hashicorp/http-echo:1.0", None, ["-listen=:5678", "-text=hello from the pod"], {})
    c = Container(spec, pod_ip, {}, tmp_path / "log")
    try:
        _, health = wait_http(f"http://{pod_ip}:5678/health", c)
        assert health == {"status": "ok"}
        assert http("GET", f"http://{pod_ip}:5678/any/path") == (200, "hello from the pod\n")
    finally:
        assert c.stop() == 0


def test_sigterm_lets_an_in_flight_request_finish(tmp_path, pod_ip):
    """The executor stops accepting on SIGTERM but completes the request it is serving (exit 0)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = threading.Event()
    release = threading.Event()

    class SlowUnit(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers["Content-Length"]))
            received.set()
            release.wait(timeout=30)
            body = b'{"data": {"names": ["t:0"], "ndarray": [[1.0]]}, "meta": {}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    unit = ThreadingHTTPServer((pod_ip, 0), SlowUnit)
    threading.Thread(target=unit.serve_forever, daemon=True).start()
    graph = {"name": "slow", "type": "MODEL", "endpoint": {"service_host": pod_ip, "service_port": unit.server_port}}
    predictor = base64.b64encode(json.dumps({"name": "p", "graph": graph}).encode()).decode()
    args = ["--sdep", "s", "--namespace", "default", "--predictor", "p", "--http_port", "8002"]
    c = Container(
        registry.resolve(EXECUTOR_IMAGE, None, args, {"ENGINE_PREDICTOR": predictor}), pod_ip, {}, tmp_path / "log"
    )
    try:
        wait_http(f"http://{pod_ip}:8002/live", c)
        result: dict[str, Any] = {}
        client = threading.Thread(
            target=lambda: result.update(
                reply=http("POST", f"http://{pod_ip}:8002/api/v1.0/predictions", {"data": {"ndarray": [[0]]}})
            )
        )
        client.start()
        assert received.wait(timeout=30)
        c.proc.send_signal(signal.SIGTERM)
        c.wait_for_log("draining in-flight requests", deadline=30)
        end = time.monotonic() + 20  # the listener closes right after that log line
        while time.monotonic() < end:
            try:
                http("GET", f"http://{pod_ip}:8002/live")
            except (urllib.error.URLError, ConnectionError, OSError):
                break  # no longer accepting new connections
            time.sleep(0.05)
        else:
            raise AssertionError("the executor kept accepting connections after SIGTERM")
        assert client.is_alive() and c.proc.poll() is None  # ... while the in-flight request is still open
        release.set()
        client.join(timeout=30)
        assert result["reply"] == (200, {"data": {"names": ["t:0"], "ndarray": [[1.0]]}, "meta": {}})
        assert c.proc.wait(timeout=30) == 0
    finally:
        release.set()
        c.stop()
        unit.shutdown()


def test_warmup_requests_run_before_the_version_is_available(pod):
    """The training code writes TF Serving's warmup file; the stand-in replays it before AVAILABLE, as TF Serving
    does, so a new replica's first real requests meet a warm model."""
    warmup = Path(pod["trained"]["path"], "assets.extra", "tf_serving_warmup_requests")
    assert warmup.is_file() and warmup.stat().st_size > 0
    logs = pod["tfs"].logs()
    assert f"Starting to read warmup data for model at {pod['volume']}" in logs
    assert "Number of warmup records read: 10." in logs
    assert logs.index("Number of warmup records read") < logs.index("Successfully loaded servable version")


def test_a_corrupt_warmup_file_fails_the_load(pod, tmp_path, pod_ip, zygote):
    version = tmp_path / "models" / "fashion-mnist" / "1"
    shutil.copytree(pod["trained"]["path"], version)
    (version / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"\x05\x00\x00\x00not a tfrecord")
    spec = registry.resolve(
        "tensorflow/serving:2.3.0", None, ["--rest_api_port=8504"], {"MODEL_NAME": "fashion-mnist", **zygote.env()}
    )
    c = Container(spec, pod_ip, {"/models": str(tmp_path / "models")}, tmp_path / "log")
    assert c.proc.wait(timeout=START_DEADLINE) == 134
    c.stop()
    logs = c.logs()
    assert "Loading servable: {name: fashion-mnist version: 1} failed:" in logs
    assert "Please verify your warmup data is in TFRecord format." in logs


def test_zygote_forks_the_seldon_runtimes_and_they_serve_at_the_kubelets_priority(zygote, tmp_path, pod_ip):
    """Every Python runtime starts as a zygote fork (no aiohttp/numpy import of its own) at the start-up
    priority the kubelet asks for, and takes the serving priority back once it listens."""
    import psutil

    env = {
        **zygote.env(),
        "ACK_SANDBOX_STARTUP_NICE": "10",
        "ACK_SANDBOX_SERVING_NICE": str(os.getpriority(os.PRIO_PROCESS, 0)),
    }
    spec = registry.resolve("hashicorp/http-echo:1.0", None, ["-listen=:5681", "-text=forked"], env)
    c = Container(spec, pod_ip, {}, tmp_path / "log")
    try:
        wait_http(f"http://{pod_ip}:5681/health", c)
        assert http("GET", f"http://{pod_ip}:5681/")[1] == "forked\n"
        launcher = psutil.Process(c.proc.pid)
        server = next(
            p
            for p in psutil.Process(zygote.process.pid).children()
            if any(conn.laddr.port == 5681 for conn in p.net_connections(kind="tcp"))
        )
        assert launcher.nice() == 10  # the launcher runs at the start-up priority all along
        if os.geteuid() == 0:  # giving the priority back needs CAP_SYS_NICE
            assert server.nice() == os.getpriority(os.PRIO_PROCESS, 0)
        else:
            assert server.nice() == 10
    finally:
        assert c.stop() == 0
