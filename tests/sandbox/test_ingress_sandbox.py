"""The whole serving path in the running sandbox: Ingress -> nginx proxy -> predictor Service -> Seldon
executor -> model unit (``hashicorp/http-echo`` as the unit, a real process per pod), the per-route
count, and the external metric read with kubectl from the Kubernetes API URL.
"""

from __future__ import annotations

import json
import urllib.parse

import requests
from kubernetes import client

from tests.helpers import kubectl, until
from tests.sandbox.workloads import PREDICTION, deploy_echo, host_of, route_ready


def metric(sandbox: dict, ns: str, labels: dict[str, str], name: str = "sls_ingress_qps") -> dict:
    selector = urllib.parse.quote(",".join(f"{k}={v}" for k, v in labels.items()))
    return json.loads(
        kubectl(
            sandbox,
            "get",
            "--raw",
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{name}?labelSelector={selector}",
        )
    )


def test_requests_through_the_ingress_reach_the_model_and_are_counted(sandbox: dict, kube: client.ApiClient) -> None:
    ns = "ingress-echo"
    deploy_echo(sandbox, kube, ns)
    ing = until(
        "the Ingress address",
        lambda: client.NetworkingV1Api(kube).read_namespaced_ingress("echo", ns).status.load_balancer.ingress,
    )
    proxy_port = int(sandbox["ingress"].rsplit(":", 1)[1])
    assert ing[0].ip == "127.0.0.1" and ing[0].ports[0].port == proxy_port
    assert "127.0.0.1" in kubectl(sandbox, "get", "ingress", "-n", ns, "echo")

    url = f"http://{ing[0].ip}:{ing[0].ports[0].port}/api/v1.0/predictions"
    route_ready(sandbox, f"{ns}-echo-default-8000")  # nginx, too, picks endpoints up shortly after the pod
    sent = 60
    with requests.Session() as s:
        s.headers["Host"] = host_of(ns)
        for _ in range(sent):
            r = s.post(url, json=PREDICTION, timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["data"]["ndarray"] == [[0.9]]
        other = s.post(url.replace("/api/", "/apx/"), json=PREDICTION, timeout=10)
        assert other.status_code == 404  # proxied (the executor's 404), so counted on the route
        routes = s.get(f"{sandbox['ingress']}/.sandbox/ingress/routes", timeout=10).json()
    route = next(r for r in routes["routes"] if r["route"] == f"{ns}-echo-default-8000")
    assert route["requests"] == sent + 1 and len(route["endpoints"]) == 1 and route["host"] == host_of(ns)

    labels = {
        "sls.project": f"k8s-log-{sandbox['cluster_id']}",
        "sls.logstore": "nginx-ingress",
        "sls.ingress.route": f"{ns}-echo-default-8000",
    }
    # A window long enough to hold every request (600 cloud s), no delay: value = requests / window (wall s),
    # once the proxy's access log has reached the log store (shipped every 0.1 s, as SLS ingests with a lag)
    window_wall = 600 / float(sandbox["time_scale"])
    expected = str(int((sent + 1) / window_wall))
    body = until(
        "the access log in the metric",
        lambda: (
            (b := metric(sandbox, ns, {**labels, "sls.query.interval": "600", "sls.query.delay": "0"}))["items"][0][
                "value"
            ]
            == expected
            and b
        ),
        timeout=10,
    )
    assert body["kind"] == "ExternalMetricValueList"
    assert body["items"][0]["value"] == expected
    latency = metric(
        sandbox, ns, {**labels, "sls.query.interval": "600", "sls.query.delay": "0"}, "sls_ingress_latency_p95"
    )
    assert int(latency["items"][0]["value"]) >= 0


def test_the_data_plane_serves_ahead_of_the_control_plane(sandbox: dict, kube: client.ApiClient) -> None:
    """On ACK the control plane, the ingress and every node have CPUs of their own; here they share the machine's.
    So the daemon (API server, controllers, kubelet) runs a step behind the processes that serve requests — the
    ingress proxy and each pod's servers (a container still starting runs behind both: test_runtimes_serving)."""
    import os

    import psutil

    ns = "ingress-echo"
    deploy_echo(sandbox, kube, ns)
    daemon = psutil.Process(int((sandbox["state_dir"] / "sandbox.pid").read_text()))
    proxy_port = int(sandbox["ingress"].rsplit(":", 1)[1])

    def listening_on(port: int) -> list[psutil.Process]:
        out = []
        for proc in daemon.children(recursive=True):
            try:
                if any(c.laddr.port == port and c.status == "LISTEN" for c in proc.net_connections(kind="tcp")):
                    out.append(proc)
            except (psutil.Error, OSError):  # gone meanwhile (pods come and go in the session sandbox)
                continue
        return out

    def launchers() -> list[tuple[list[str], int]]:
        out = []
        for proc in daemon.children(recursive=True):
            try:
                cmdline = proc.cmdline()
                if "ack_sandbox.runtimes.launcher" in cmdline:
                    out.append((cmdline, proc.nice()))
            except (psutil.Error, OSError):
                continue
        return out

    [proxy] = listening_on(proxy_port)
    assert proxy.cmdline()[2] == "ack_sandbox.controllers.ingress_proxy"
    if os.geteuid() != 0:  # without CAP_SYS_NICE the sandbox leaves priorities alone
        assert daemon.nice() == proxy.nice()
        return
    serving = daemon.nice() - 5

    def misplaced() -> list[str]:
        """Processes not (yet) at their priority; a container that just started listening takes a moment."""
        executors = listening_on(8000)  # the pods' Seldon executors (zygote forks)
        wrong = [] if executors else ["no executor listens"]
        for p in executors:
            try:
                if p.nice() != serving:
                    wrong.append(f"executor {p.pid} at {p.nice()}")
            except (psutil.Error, OSError):
                continue
        wrong += [] if proxy.nice() == serving else [f"ingress proxy at {proxy.nice()}"]
        for cmdline, nice in launchers():
            # the start-up priority (10 behind a probe, else the kubelet's), or the serving one where it serves
            # in-process (no zygote yet)
            if nice not in (10, daemon.nice(), serving):
                wrong.append(f"launcher {cmdline[3:4]} at {nice}")
        return wrong

    until("the data plane ahead of the control plane", lambda: not misplaced() or None, timeout=10)
    assert not misplaced()
