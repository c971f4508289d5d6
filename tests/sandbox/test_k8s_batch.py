"""Jobs, CronJobs, Endpoints/EndpointSlices and DELETE answers of the sandbox's Kubernetes API, judged by the
official ``kubernetes`` client, kubectl from the lock and Airflow's own ``KubernetesJobOperator``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import FakeDag, FakeTI, airflow_env, kubectl_run, until

BUSYBOX = "busybox:1.36"


@pytest.fixture(scope="module")
def batch(kube: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(kube)


@pytest.fixture(scope="module")
def ns(core: client.CoreV1Api) -> Iterator[str]:
    name = f"batch-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", script]}],
                }
            },
            **spec,
        },
    }


def _conds(job: client.V1Job) -> dict[str, client.V1JobCondition]:
    return {c.type: c for c in (job.status.conditions or [])}


def test_delete_returns_the_object_for_services_and_service_accounts_status_for_others(
    core: client.CoreV1Api, ns: str
) -> None:
    svc = core.create_namespaced_service(ns, {"metadata": {"name": "gone"}, "spec": {"ports": [{"port": 80}]}})
    deleted = core.delete_namespaced_service("gone", ns)
    assert isinstance(deleted, client.V1Service) and deleted.metadata.uid == svc.metadata.uid
    sa = core.create_namespaced_service_account(ns, {"metadata": {"name": "robot"}})
    gone_sa = core.delete_namespaced_service_account("robot", ns)
    assert isinstance(gone_sa, client.V1ServiceAccount) and gone_sa.metadata.uid == sa.metadata.uid
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}})
    status = core.delete_namespaced_config_map("cm", ns)
    assert status.status == "Success" and status.details.name == "cm" and status.details.kind == "configmaps"


def test_a_service_gets_endpoints_and_an_endpointslice_of_its_ready_pods(
    sandbox: dict, core: client.CoreV1Api, kube: client.ApiClient, ns: str
) -> None:
    pod = {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX,
                    "command": ["sleep", "3600"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                }
            ]
        },
    }
    core.create_namespaced_pod(ns, pod)
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
        },
    )
    ip = until("pod IP", lambda: core.read_namespaced_pod("web", ns).status.pod_ip)

    def addresses() -> Any:
        ep = core.read_namespaced_endpoints("web", ns)
        return ep if ep.subsets and ep.subsets[0].addresses else None

    ep = until("endpoints of web", addresses)
    sub = ep.subsets[0]
    assert [a.ip for a in sub.addresses] == [ip] and sub.addresses[0].target_ref.name == "web"
    assert [(p.name, p.port, p.protocol) for p in sub.ports] == [("web", 8080, "TCP")]
    assert ep.metadata.labels == {"tier": "front"}
    slices = client.DiscoveryV1Api(kube).list_namespaced_endpoint_slice(
        ns, label_selector="kubernetes.io/service-name=web"
    )
    (eps,) = slices.items
    assert eps.address_type == "IPv4" and eps.metadata.name.startswith("web-")
    assert eps.metadata.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert eps.metadata.owner_references[0].kind == "Service"
    assert eps.endpoints[0].addresses == [ip] and eps.endpoints[0].conditions.ready is True
    assert [(p.name, p.port) for p in eps.ports] == [("web", 8080)]
    out = kubectl_run(sandbox, "get", "endpoints", "web", "-n", ns).stdout
    assert f"{ip}:8080" in out
    # the API server's own endpoint
    api_ep = core.read_namespaced_endpoints("kubernetes", "default")
    assert api_ep.subsets[0].ports[0].name == "https"
    # the pod goes: the address goes; the service goes: its Endpoints and slice go
    core.delete_namespaced_pod("web", ns, grace_period_seconds=0)
    until("endpoints emptied", lambda: not core.read_namespaced_endpoints("web", ns).subsets)
    core.delete_namespaced_service("web", ns)
    until(
        "endpoints and slice deleted",
        lambda: (
            not core.list_namespaced_endpoints(ns).items
            and not client.DiscoveryV1Api(kube).list_namespaced_endpoint_slice(ns).items
        ),
    )


def test_jobs_run_to_complete_or_failed_with_the_real_conditions(
    sandbox: dict, batch: client.BatchV1Api, core: client.CoreV1Api, ns: str
) -> None:
    batch.create_namespaced_job(ns, _job("ok", "echo done", completions=2, parallelism=1))
    batch.create_namespaced_job(ns, _job("bad", "exit 3", backoffLimit=0))
    created = batch.read_namespaced_job("ok", ns)
    uid = created.metadata.uid
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert created.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "ok"
    assert created.spec.backoff_limit == 6 and created.spec.completion_mode == "NonIndexed"
    assert created.spec.pod_replacement_policy == "TerminatingOrFailed"

    ok = until("job ok complete", lambda: (j := batch.read_namespaced_job("ok", ns)) and "Complete" in _conds(j) and j)
    conds = _conds(ok)
    assert conds["SuccessCriteriaMet"].status == "True" and conds["Complete"].status == "True"
    assert ok.status.succeeded == 2 and not ok.status.failed and not ok.status.active
    assert ok.status.completion_time is not None and ok.status.start_time is not None
    assert ok.status.ready == 0 and ok.status.terminating == 0
    pods = core.list_namespaced_pod(ns, label_selector="batch.kubernetes.io/job-name=ok").items
    assert len(pods) == 2 and all(p.status.phase == "Succeeded" for p in pods)
    assert all(not p.metadata.finalizers for p in pods)  # the tracking finalizer is removed once counted
    log = core.read_namespaced_pod_log(pods[0].metadata.name, ns, _preload_content=False)
    assert log.data == b"done\n"

    bad = until("job bad failed", lambda: (j := batch.read_namespaced_job("bad", ns)) and "Failed" in _conds(j) and j)
    conds = _conds(bad)
    assert conds["FailureTarget"].reason == "BackoffLimitExceeded"
    assert conds["Failed"].reason == "BackoffLimitExceeded"
    assert conds["Failed"].message == "Job has reached the specified backoff limit"
    assert bad.status.failed == 1 and not bad.status.succeeded and "Complete" not in conds

    out = kubectl_run(sandbox, "get", "jobs", "-n", ns).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["ok"][1:3] == ["Complete", "2/2"] and rows["bad"][1:3] == ["Failed", "0/1"]
    # bad input: a pod template that restarts Always is refused with the field and the allowed values
    refused = kubectl_run(
        sandbox,
        "create",
        "-n",
        ns,
        "-f",
        "-",
        check=False,
        stdin='{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"always"},"spec":{"template":{"spec":'
        '{"restartPolicy":"Always","containers":[{"name":"m","image":"busybox","command":["true"]}]}}}}',
    )
    assert refused.returncode != 0 and "spec.template.spec.restartPolicy" in refused.stderr
    assert 'supported values: "OnFailure", "Never"' in refused.stderr
    # batch/v1 orphans the pods by default; kubectl deletes them (it sends propagationPolicy=Background)
    batch.delete_namespaced_job("bad", ns)
    assert core.list_namespaced_pod(ns, label_selector="batch.kubernetes.io/job-name=bad").items
    kubectl_run(sandbox, "delete", "job", "ok", "-n", ns)
    until(
        "ok's pods collected",
        lambda: not core.list_namespaced_pod(ns, label_selector="batch.kubernetes.io/job-name=ok").items,
    )


def test_a_cronjob_creates_jobs_on_schedule_and_keeps_its_history(
    sandbox: dict, kube: client.ApiClient, batch: client.BatchV1Api, ns: str
) -> None:
    # every cloud minute = every 2 real seconds at the suite's time scale 30
    tmpl = _job("x", "echo tick")["spec"]
    batch.create_namespaced_cron_job(
        ns,
        {
            "metadata": {"name": "tick"},
            "spec": {"schedule": "*/1 * * * *", "successfulJobsHistoryLimit": 1, "jobTemplate": {"spec": tmpl}},
        },
    )

    def two_runs() -> Any:
        cj = batch.read_namespaced_cron_job("tick", ns)
        return cj if cj.status.last_successful_time and cj.status.last_schedule_time else None

    cj = until("the cronjob ran", two_runs, timeout=60)
    jobs = batch.list_namespaced_job(ns).items
    mine = [j for j in jobs if j.metadata.owner_references and j.metadata.owner_references[0].name == "tick"]
    assert mine and all(j.metadata.name.startswith("tick-") for j in mine)
    assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in mine[0].metadata.annotations
    until(
        "history trimmed to 1 successful job",
        lambda: (
            sum(
                1
                for j in batch.list_namespaced_job(ns).items
                if (j.metadata.owner_references or [None])[0] is not None and "Complete" in _conds(j)
            )
            <= 1
            and batch.read_namespaced_cron_job("tick", ns).status.last_successful_time != cj.status.last_successful_time
        ),
        timeout=60,
    )
    out = kubectl_run(sandbox, "get", "cronjobs", "-n", ns).stdout
    assert "*/1 * * * *" in out and "tick" in out
    bad = kubectl_run(
        sandbox,
        "create",
        "-n",
        ns,
        "-f",
        "-",
        check=False,
        stdin='{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"oops"},"spec":{"schedule":"61 * * * *",'
        '"jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"m",'
        '"image":"busybox","command":["true"]}]}}}}}}',
    )
    assert bad.returncode != 0 and "spec.schedule" in bad.stderr
    batch.patch_namespaced_cron_job("tick", ns, {"spec": {"suspend": True}})


def test_airflow_kubernetes_job_operator_runs_a_job_to_completion(sandbox: dict, ns: str) -> None:
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

    conns = {k: v for k, v in airflow_env(sandbox).items() if k == "AIRFLOW_CONN_KUBERNETES_DEFAULT"}
    saved = {k: os.environ.get(k) for k in conns}
    os.environ.update(conns)
    try:
        op = KubernetesJobOperator(
            task_id="train",
            namespace=ns,
            image=BUSYBOX,
            cmds=["sh", "-c", "echo trained"],
            name="train",
            random_name_suffix=False,
            parallelism=1,
            wait_until_job_complete=True,
            job_poll_interval=0.5,
            get_logs=False,
        )
        ti = FakeTI()
        ti.dag_id, ti.task_id, ti.run_id, ti.try_number, ti.map_index = "d", "train", "r1", 1, -1  # type: ignore[attr-defined]
        context: dict[str, Any] = {"ti": ti, "run_id": "r1", "dag": FakeDag(), "task_instance": ti}
        op.execute(context)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    job = ti.xcom["job"]
    assert ti.xcom["job_name"] == "job-train"
    conds = {c["type"]: c["status"] for c in job["status"]["conditions"]}
    assert conds.get("Complete") == "True" and job["status"]["succeeded"] == 1
