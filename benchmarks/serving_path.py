"""The sandbox's serving path under open-loop load: where a prediction's time and CPU go.

``python -m benchmarks serving_path [--rates 25,50,100,200] [--seconds 10] [--replicas 3]
[--scale-rate 100] [--scale-seconds 40] [--skip-scale-out]``

All in one run, on the same machine, with the same open-loop client (``_openloop``: requests start on a
fixed schedule, latency counted from the scheduled start, so a stalled server is not hidden):

(c) a bare aiohttp echo server — the floor of one Python HTTP hop here;
(b) the TF Serving stand-in directly (REST ``:predict`` of the demo's real SavedModel);
(a) the whole chain as the demo deploys it: ingress proxy → Seldon executor → tfserving-proxy → TF
    Serving, ``--replicas`` replicas of the seed's SeldonDeployment (GPU pods on the elastic pool).

For each offered load it prints achieved RPS, p50/p95/p99 and the servers' CPU-seconds per request (the
CPU of the server processes — for (a) the sandbox daemon and every pod process — over the run, divided by
the requests answered; the client's own CPU is left out), then the ratios (a)/(b) and (b)/(c).

Then the scale-out: one replica under ``--scale-rate`` req/s, scaled to 10 replicas (the seed's
maxReplicas) after 5 s, so ten pods start (and nodes are provisioned for them) while the first one
serves: p50/p95/p99 over the whole run and the worst 1-s window's p99, and when the tenth replica was
ready. Figures from one machine and one moment: run it twice before trusting a difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
NS = "bench"
SDEP = "serving-bench"
MODEL = "fashion-mnist"
LABEL = "serving-bench"
HOST = "serving-bench.local"
GPU_TYPE = "ecs.gn6i-c4g1.xlarge"
DEPLOYMENT = f"{SDEP}-predictor-0-tfserving-proxy-{MODEL}"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "sandbox"), str(REPO / "include"), str(REPO)]),
        "PYTHONWARNINGS": "ignore",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _tree_cpu(root_pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their descendants, now."""
    total = 0.0
    seen: set[int] = set()
    for pid in root_pids:
        try:
            procs = [psutil.Process(pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                continue
    return total


def _load(url: str, rate: float, seconds: float, body: Path, headers: dict[str, str], window: float = 0) -> dict:
    cmd = [
        PY,
        "-m",
        "benchmarks._openloop",
        url,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--body",
        str(body),
        "--window",
        str(window),
    ]
    for k, v in headers.items():
        cmd += ["--header", f"{k}:{v}"]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env=_env(), cwd=REPO, timeout=seconds + 60
    ).stdout
    return json.loads(out)


def _measure(
    url: str, rate: float, seconds: float, body: Path, headers: dict[str, str], server_pids: list[int]
) -> dict:
    cpu0 = _tree_cpu(server_pids)
    result = _load(url, rate, seconds, body, headers)
    cpu = _tree_cpu(server_pids) - cpu0
    result["cpu_s_per_request"] = round(cpu / result["ok"], 5) if result["ok"] else None
    return result


# --- the three setups -----------------------------------------------------------------------------


@contextmanager
def echo_server() -> Iterator[tuple[str, list[int]]]:
    port = _free_port()
    code = (
        "import sys\nfrom aiohttp import web\n"
        "async def echo(r):\n    return web.Response(body=await r.read(), content_type='application/json')\n"
        "app = web.Application()\napp.router.add_post('/{tail:.*}', echo)\n"
        f"web.run_app(app, host='127.0.0.1', port={port}, access_log=None, print=None)\n"
    )
    proc = subprocess.Popen([PY, "-c", code], env=_env())
    try:
        url = f"http://127.0.0.1:{port}/echo"
        _until("echo server", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, 30)
        yield url, [proc.pid]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def tf_serving(model_base: Path) -> Iterator[tuple[str, list[int]]]:
    port = _free_port()
    env = {**_env(), "ACK_SANDBOX_POD_IP": "127.0.0.1"}
    log = open(model_base.parent / "tfserving.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "ack_sandbox.runtimes.tfserving",
            f"--rest_api_port={port}",
            f"--model_name={MODEL}",
            f"--model_base_path={model_base}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _until(
            "TF Serving stand-in", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, 120
        )
        yield f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict", [proc.pid]
    finally:
        proc.send_signal(signal.SIGINT)  # TF Serving ignores SIGTERM, as the real binary does; SIGINT drains
        proc.wait(timeout=20)
        log.close()


class Chain:
    """The seed's deployment on a sandbox: elastic GPU pool, model on OSS, OSS PV/PVC, SeldonDeployment, Ingress."""

    def __init__(self, work: Path, model_dir: Path) -> None:
        self.work = work
        self.model_dir = model_dir
        self.state_dir = work / "sandbox"
        self.endpoints: dict[str, Any] = {}

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        kubectl = shutil.which("kubectl", path=f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        return subprocess.run(
            [kubectl or "kubectl", "--kubeconfig", str(self.state_dir / "kubeconfig"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    def up(self) -> None:
        sys.path.insert(0, str(REPO / "sandbox"))
        from ack_sandbox import cli

        self.endpoints = cli.up(self.state_dir, time_scale=30.0)
        self._pool()
        self._model()
        self.kubectl(
            "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        )
        for doc in self._manifests(replicas=1):
            self.kubectl("apply", "-f", "-", stdin=json.dumps(doc))

    def down(self) -> None:
        from ack_sandbox import cli

        cli.down(self.state_dir)

    @property
    def daemon_pids(self) -> list[int]:
        return [int((self.state_dir / "sandbox.pid").read_text().strip())]

    def _pool(self) -> None:
        from alibabacloud_cs20151215 import models as cs
        from alibabacloud_cs20151215.client import Client
        from alibabacloud_tea_openapi.utils_models import Config

        e = self.endpoints
        client = Client(
            Config(
                access_key_id=e["access_key_id"],
                access_key_secret=e["access_key_secret"],
                endpoint=e["cs"].split("//", 1)[1],
                protocol="http",
            )
        )
        vsw = client.describe_cluster_detail(e["cluster_id"]).body.vswitch_ids
        req = cs.CreateClusterNodePoolRequest(
            nodepool_info=cs.CreateClusterNodePoolRequestNodepoolInfo(name=LABEL, type="ess"),
            auto_scaling=cs.CreateClusterNodePoolRequestAutoScaling(
                enable=True, min_instances=0, max_instances=10, type="spot"
            ),
            kubernetes_config=cs.CreateClusterNodePoolRequestKubernetesConfig(
                labels=[cs.Tag(key="seldon", value=LABEL)], runtime="containerd"
            ),
            scaling_group=cs.CreateClusterNodePoolRequestScalingGroup(
                instance_types=[GPU_TYPE],
                vswitch_ids=vsw,
                instance_charge_type="PostPaid",
                spot_strategy="SpotAsPriceGo",
                multi_az_policy="COST_OPTIMIZED",
                on_demand_base_capacity=0,
                on_demand_percentage_above_base_capacity=30,
                compensate_with_on_demand=True,
            ),
        )
        pool_id = client.create_cluster_node_pool(e["cluster_id"], req).body.nodepool_id
        _until(
            "pool active",
            lambda: client.describe_cluster_node_pool_detail(e["cluster_id"], pool_id).body.status.state == "active",
            timeout=60,
        )

    def _model(self) -> None:
        import oss2

        e = self.endpoints
        bucket = oss2.Bucket(oss2.Auth(e["access_key_id"], e["access_key_secret"]), e["oss"], "bench-models")
        bucket.create_bucket()
        for path in sorted(self.model_dir.rglob("*")):
            if path.is_file():
                bucket.put_object_from_file(f"models/{path.relative_to(self.model_dir.parent).as_posix()}", str(path))

    def _manifests(self, replicas: int) -> list[dict]:
        """What the DAG applies (include/manifests), written out: Secret, PV, PVC, SeldonDeployment, Ingress."""
        e = self.endpoints
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bench-oss", "namespace": NS},
            "stringData": {"akId": e["access_key_id"], "akSecret": e["access_key_secret"]},
        }
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "bench-model"},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "csi": {
                    "driver": "ossplugin.csi.alibabacloud.com",
                    "volumeHandle": "bench-model",
                    "nodePublishSecretRef": {"name": "bench-oss", "namespace": NS},
                    "volumeAttributes": {
                        "bucket": "bench-models",
                        "url": e["oss"],
                        "path": "/models",
                        "otherOpts": "-o max_stat_cache_size=0 -o allow_other",
                    },
                },
            },
        }
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "bench-model", "namespace": NS},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "resources": {"requests": {"storage": "5Gi"}},
                "storageClassName": "",
                "volumeName": "bench-model",
            },
        }
        sdep = {
            "apiVersion": "machinelearning.seldon.io/v1",
            "kind": "SeldonDeployment",
            "metadata": {"name": SDEP, "namespace": NS},
            "spec": {
                "name": SDEP,
                "predictors": [
                    {
                        "name": "predictor",
                        "replicas": replicas,
                        "componentSpecs": [
                            {
                                "spec": {
                                    "containers": [
                                        {
                                            "name": "tfserving-proxy",
                                            "image": "seldonio/tfserving-proxy_rest:1.3.0",
                                            "env": [{"name": "SELDON_LOG_LEVEL", "value": "INFO"}],
                                            "resources": {"requests": {"cpu": "0.5"}},
                                        },
                                        {
                                            "name": MODEL,
                                            "image": "tensorflow/serving:2.3.0-gpu",
                                            "args": [
                                                "--port=8500",
                                                "--rest_api_port=8501",
                                                f"--model_name={MODEL}",
                                                f"--model_base_path=/mnt/{MODEL}",
                                            ],
                                            "volumeMounts": [
                                                {"name": "model-storage", "mountPath": "/mnt", "readOnly": True}
                                            ],
                                            "ports": [{"containerPort": 8501, "protocol": "TCP"}],
                                            "readinessProbe": {
                                                "httpGet": {"path": f"/v1/models/{MODEL}", "port": 8501},
                                                "periodSeconds": 2,
                                                "failureThreshold": 3,
                                            },
                                            "resources": {
                                                "limits": {"nvidia.com/gpu": 1},
                                                "requests": {"nvidia.com/gpu": 1},
                                            },
                                        },
                                    ],
                                    "nodeSelector": {"seldon": LABEL},
                                    "volumes": [
                                        {
                                            "name": "model-storage",
                                            "persistentVolumeClaim": {"claimName": "bench-model", "readOnly": True},
                                        }
                                    ],
                                    "terminationGracePeriodSeconds": 1,
                                }
                            }
                        ],
                        "graph": {
                            "name": "tfserving-proxy",
                            "type": "MODEL",
                            "endpoint": {"type": "REST"},
                            "children": [],
                            "parameters": [
                                {"name": "rest_endpoint", "type": "STRING", "value": "http://localhost:8501"},
                                {"name": "model_name", "type": "STRING", "value": MODEL},
                                {"name": "signature_name", "type": "STRING", "value": "serving_default"},
                            ],
                        },
                    }
                ],
            },
        }
        ingress = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": SDEP, "namespace": NS},
            "spec": {
                "rules": [
                    {
                        "host": HOST,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": f"{SDEP}-predictor", "port": {"number": 8000}}},
                                }
                            ]
                        },
                    }
                ]
            },
        }
        return [secret, pv, pvc, sdep, ingress]

    def scale(self, replicas: int) -> None:
        patch = [{"op": "replace", "path": "/spec/predictors/0/replicas", "value": replicas}]
        self.kubectl("patch", "seldondeployment", SDEP, "-n", NS, "--type", "json", "-p", json.dumps(patch))

    def ready_replicas(self) -> int:
        doc = json.loads(self.kubectl("get", "deployment", DEPLOYMENT, "-n", NS, "-o", "json"))
        return int((doc.get("status") or {}).get("readyReplicas") or 0)

    def wait_ready(self, replicas: int, timeout: float = 240) -> None:
        _until(f"{replicas} ready replicas", lambda: self.ready_replicas() >= replicas, timeout, interval=0.5)

    @property
    def url(self) -> str:
        return f"{self.endpoints['ingress']}/api/v1.0/predictions"


# --- the run ---------------------------------------------------------------------------------------


def _train(work: Path) -> Path:
    subprocess.run(
        [PY, "-m", "training.train", str(work / "models"), "--epochs", "1"],
        check=True,
        env=_env(),
        capture_output=True,
        timeout=600,
    )
    return work / "models" / MODEL


def _bodies(work: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(REPO / "include"))
    from training import sample_images

    images, _ = sample_images(1)
    tf_body, seldon_body = work / "tf.json", work / "seldon.json"
    tf_body.write_text(json.dumps({"instances": images}))
    seldon_body.write_text(json.dumps({"data": {"ndarray": images}}))
    return tf_body, seldon_body


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) and v < 1 else str(v))


def _table(rows: list[dict]) -> None:
    cols = ["setup", "offered", "achieved_rps", "p50_ms", "p95_ms", "p99_ms", "errors", "cpu_s_per_request"]
    print("  ".join(f"{c:>17}" for c in cols))
    for r in rows:
        print("  ".join(f"{_fmt(r.get(c)):>17}" for c in cols), flush=True)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks serving_path", description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="25,50,100,200", help="offered loads, req/s")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each load")
    p.add_argument("--replicas", type=int, default=3, help="replicas of the chain for the load table")
    p.add_argument("--scale-rate", type=float, default=100.0)
    p.add_argument("--scale-seconds", type=float, default=40.0)
    p.add_argument("--skip-scale-out", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs of every pod)")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r]
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; work dir {work}", flush=True)
    rows: list[dict] = []
    chain: Chain | None = None
    try:
        model_base = _train(work)
        tf_body, seldon_body = _bodies(work)
        with echo_server() as (url, pids):
            for rate in rates:
                rows.append(
                    {
                        "setup": "(c) aiohttp echo",
                        "offered": rate,
                        **_measure(url, rate, args.seconds, seldon_body, {}, pids),
                    }
                )
        with tf_serving(model_base) as (url, pids):
            _load(url, 20, 1, tf_body, {})  # first requests after start
            for rate in rates:
                rows.append(
                    {"setup": "(b) TF Serving", "offered": rate, **_measure(url, rate, args.seconds, tf_body, {}, pids)}
                )
        chain = Chain(work, model_base)
        chain.up()
        chain.scale(args.replicas)
        chain.wait_ready(args.replicas)
        _load(chain.url, 20, 1, seldon_body, {"Host": HOST})
        for rate in rates:
            rows.append(
                {
                    "setup": f"(a) chain x{args.replicas}",
                    "offered": rate,
                    **_measure(chain.url, rate, args.seconds, seldon_body, {"Host": HOST}, chain.daemon_pids),
                }
            )
        _table(rows)
        by = {(r["setup"][:3], r["offered"]): r for r in rows}
        print("\nratios per offered load: (a)/(b) and (b)/(c) of p50, p95 and CPU-seconds per request")
        for rate in rates:
            a, b, c = by[("(a)", rate)], by[("(b)", rate)], by[("(c)", rate)]
            print(
                f"  {rate:>5.0f} req/s  p50 {_ratio(a['p50_ms'], b['p50_ms'])} / {_ratio(b['p50_ms'], c['p50_ms'])}"
                f"  p95 {_ratio(a['p95_ms'], b['p95_ms'])} / {_ratio(b['p95_ms'], c['p95_ms'])}"
                f"  cpu {_ratio(a['cpu_s_per_request'], b['cpu_s_per_request'])} / "
                f"{_ratio(b['cpu_s_per_request'], c['cpu_s_per_request'])}",
                flush=True,
            )
        if not args.skip_scale_out:
            _scale_out(chain, seldon_body, args.scale_rate, args.scale_seconds)
    finally:
        if chain is not None:
            chain.down()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _scale_out(chain: Chain, body: Path, rate: float, seconds: float) -> None:
    import threading

    chain.scale(1)
    _until(
        "back to 1 replica",
        lambda: (
            chain.ready_replicas() == 1
            and len(json.loads(chain.kubectl("get", "pods", "-n", NS, "-o", "json"))["items"]) == 1
        ),
        240,
        interval=0.5,
    )
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(_load(chain.url, rate, seconds, body, {"Host": HOST}, window=1.0))
    )
    started = time.monotonic()
    runner.start()
    time.sleep(5)
    chain.scale(10)
    scaled_at = time.monotonic()
    ready_after = None
    try:
        chain.wait_ready(10, timeout=max(5.0, seconds - 5))
        ready_after = round(time.monotonic() - scaled_at, 1)
    except TimeoutError:
        pass
    runner.join()
    windows = [w for w in result.get("windows", []) if w["ok"]]
    worst = max(windows, key=lambda w: w["p99_ms"] or 0) if windows else {}
    print(
        f"\nscale-out 1 -> 10 replicas under {rate:.0f} req/s for {seconds:.0f} s (scaled at "
        f"{scaled_at - started:.0f} s): achieved {result.get('achieved_rps')} req/s, errors {result.get('errors')}, "
        f"p50 {result.get('p50_ms')} / p95 {result.get('p95_ms')} / p99 {result.get('p99_ms')} ms; worst 1-s "
        f"window p99 {worst.get('p99_ms')} ms at {worst.get('start_s')} s; 10 replicas ready "
        f"{ready_after if ready_after is not None else 'not within the run'} s after scaling",
        flush=True,
    )
    print(
        "  p99 ms per second: "
        + " ".join(
            f"{int(w['start_s'])}:{'-' if w['p99_ms'] is None else round(w['p99_ms'])}"
            + (f"({w['errors']} err)" if w["errors"] else "")
            for w in result.get("windows", [])
        ),
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
