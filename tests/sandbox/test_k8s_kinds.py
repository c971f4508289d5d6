"""RBAC objects, ``kubectl auth can-i|whoami`` and APIServices on the sandbox, judged by kubectl from the lock."""

from __future__ import annotations

from kubernetes import client, config

from tests.helpers import kubectl_run, until

BINDING = """{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
 "metadata": {"name": "dev-edit", "namespace": "default"},
 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
 "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "sandbox-developer"}]}"""


def test_rbac_objects_auth_reviews_and_apiservices(sandbox: dict) -> None:
    def k(*args: str, stdin: str | None = None, check: bool = True):
        return kubectl_run(sandbox, *args, stdin=stdin, check=check)

    roles = k("get", "clusterroles", "-o", "name").stdout.split()
    assert {"clusterrole.rbac.authorization.k8s.io/" + r for r in ("cluster-admin", "admin", "edit", "view")} <= set(
        roles
    )
    assert "rolebinding.rbac.authorization.k8s.io/dev-edit created" in k("apply", "-f", "-", stdin=BINDING).stdout
    row = k("get", "rolebinding", "dev-edit", "-o", "wide", "--no-headers").stdout.split()
    assert row[:2] == ["dev-edit", "ClusterRole/edit"] and "sandbox-developer" in row
    changed = BINDING.replace('"name": "edit"', '"name": "view"')
    refused = k("apply", "-f", "-", stdin=changed, check=False)
    assert refused.returncode != 0 and "cannot change roleRef" in refused.stderr
    # SelfSubjectAccessReview / SelfSubjectReview with the official client, in JSON (kubectl auth can-i|whoami send
    # protobuf: tests/sandbox/test_k8s_protobuf.py): the admin may do anything, the restricted user only in default
    admin = config.new_client_from_config(str(sandbox["state_dir"] / "kubeconfig"))
    dev = config.new_client_from_config(str(sandbox["state_dir"] / "kubeconfig"), context="ack-sandbox-restricted")

    def can(api: client.ApiClient, verb: str, resource: str, namespace: str = "") -> bool:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(
            {"spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace}}}
        )
        return bool(review.status.allowed)

    assert can(admin, "delete", "nodes") and can(dev, "create", "pods", "default")
    assert not can(dev, "list", "nodes") and not can(dev, "get", "pods", "kube-system")
    who = client.AuthenticationV1Api(dev).create_self_subject_review({"metadata": {}})
    assert who.status.user_info.username == "sandbox-developer" and who.status.user_info.groups == [
        "system:authenticated"
    ]
    me = client.AuthenticationV1Api(admin).create_self_subject_review({"metadata": {}})
    assert me.status.user_info.username == "kubernetes-admin" and "system:masters" in me.status.user_info.groups

    # APIServices: Local for built-ins, the aggregated metrics APIs behind their Services
    def apiservices() -> dict[str, list[str]] | None:
        rows = {line.split()[0]: line.split() for line in k("get", "apiservices", "--no-headers").stdout.splitlines()}
        return rows if {"v1.", "v1.apps", "v1.batch", "v1beta1.metrics.k8s.io"} <= set(rows) else None

    rows = until("apiservices registered", apiservices, timeout=30)
    assert rows["v1.apps"][1:3] == ["Local", "True"]
    assert rows["v1beta1.metrics.k8s.io"][1:3] == ["kube-system/metrics-server", "True"]
    assert "v1.machinelearning.seldon.io" in rows  # the CRD's group-version too
    k("delete", "rolebinding", "dev-edit")


def test_kubectl_explain_reads_the_served_schemas(sandbox: dict) -> None:
    out = kubectl_run(sandbox, "explain", "deployment.spec.replicas").stdout
    assert "GROUP:      apps" in out and "FIELD: replicas <integer>" in out and "desired pods" in out
    job = kubectl_run(sandbox, "explain", "jobs.spec").stdout
    assert "backoffLimit\t<integer>" in job and "template\t<PodTemplateSpec>" in job
    sdep = kubectl_run(sandbox, "explain", "sdep").stdout  # a CRD: its own openAPIV3Schema
    assert "KIND:       SeldonDeployment" in sdep
    missing = kubectl_run(sandbox, "explain", "pods.spec.nosuchfield", check=False)
    assert missing.returncode != 0 and "nosuchfield" in missing.stderr


def test_the_schema_table_matches_the_client_in_the_lock() -> None:
    # openapi_models.json.gz is extracted from the kubernetes client's models; regenerate it with
    # `python -m ack_sandbox.k8s.openapi_schemas` after the client or the served kinds change.
    from ack_sandbox.k8s import openapi_schemas
    from ack_sandbox.k8s.registry import Registry

    fresh = openapi_schemas.generate([rt for rt in Registry().all() if not rt.crd])
    assert fresh == openapi_schemas.table()
    assert fresh["V1DeploymentSpec"]["replicas"][0] == "int"
