"""kubectl's typed commands send ``application/vnd.kubernetes.protobuf``: the sandbox decodes them (k8s/protobuf.py).

Each command runs as a user types it; the object is then read back as JSON and checked field by field. The raw
HTTP tests build their bodies with the protobuf runtime over the sandbox's descriptors (the envelope is
apimachinery's: ``k8s\\x00`` + runtime.Unknown) and check the apiserver's 400/415 Status bodies.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from ack_sandbox.k8s import protobuf
from tests.helpers import until

PB = "application/vnd.kubernetes.protobuf"


def kubectl_run_stdin(kubectl, doc: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-f", "-", check=check, stdin=doc)


@pytest.fixture
def name() -> str:
    return f"pb-{uuid.uuid4().hex[:8]}"


def _get(kubectl, *args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def _post(
    sandbox: dict, path: str, body: bytes, content_type: str = PB, method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    token = json.loads((Path(sandbox["state_dir"]) / "kubernetes" / "tokens.json").read_text())["admin"]
    req = urllib.request.Request(
        sandbox["kubernetes"] + path,
        method=method,
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type, "Accept": f"{PB}, */*"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    unknown_cls = protobuf._message("k8s.io.apimachinery.pkg.runtime.Unknown")
    assert unknown_cls is not None
    env: Any = unknown_cls()
    env.typeMeta.apiVersion, env.typeMeta.kind, env.raw = api_version, kind, raw
    return protobuf.MAGIC + env.SerializeToString()


def test_create_configmap_and_secret(kubectl, name: str, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\xff\xfebinary")
    out = kubectl("create", "configmap", name, "--from-literal=a=1", "--from-literal=empty=", f"--from-file={blob}")
    assert out.stdout.strip() == f"configmap/{name} created"
    cm = _get(kubectl, "configmap", name)
    # an empty map value stays (only zero-valued struct fields are omitempty)
    assert cm["data"] == {"a": "1", "empty": ""} and cm["metadata"]["namespace"] == "default"
    assert base64.b64decode(cm["binaryData"]["blob.bin"]) == b"\x00\xff\xfebinary" and cm["metadata"]["uid"]
    kubectl("create", "secret", "generic", name, "--from-literal=password=p@ss w0rd", "--from-literal=user=me")
    secret = _get(kubectl, "secret", name)
    assert secret["type"] == "Opaque"
    assert {key: base64.b64decode(v).decode() for key, v in secret["data"].items()} == {
        "password": "p@ss w0rd",
        "user": "me",
    }


def test_create_namespace(kubectl, name: str) -> None:
    kubectl("create", "namespace", name)
    ns = _get(kubectl, "namespace", name)
    assert ns["status"]["phase"] == "Active" and ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == name
    kubectl("delete", "namespace", name, "--wait=false")


def test_create_deployment(kubectl, name: str) -> None:
    kubectl("create", "deployment", name, "--image=registry.local/web:1.2", "--replicas=3", "--port=8080")
    d = _get(kubectl, "deployment", name)
    assert d["metadata"]["labels"] == {"app": name}
    spec = d["spec"]
    assert spec["replicas"] == 3 and spec["selector"] == {"matchLabels": {"app": name}}
    (c,) = spec["template"]["spec"]["containers"]
    assert c["image"] == "registry.local/web:1.2" and c["name"] == "web"
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]  # protocol: the server's default
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    # zero-valued fields kubectl's Go struct carries (paused: false, minReadySeconds: 0) stay out, as in Go's JSON
    assert "paused" not in spec and "minReadySeconds" not in spec
    kubectl("create", "deployment", f"{name}-zero", "--image=registry.local/web:1.2", "--replicas=0")
    assert _get(kubectl, "deployment", f"{name}-zero")["spec"]["replicas"] == 0  # a pointer's zero is kept


def test_create_job_and_cronjob(kubectl, name: str) -> None:
    kubectl("create", "job", name, "--image=busybox", "--", "sh", "-c", "exit 0")
    job = _get(kubectl, "job", name)
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["containers"][0]["command"] == ["sh", "-c", "exit 0"]
    assert job["spec"]["backoffLimit"] == 6 and job["spec"]["completions"] == 1  # server defaults
    kubectl("create", "cronjob", name, "--image=busybox", "--schedule=*/5 * * * *", "--restart=OnFailure", "--", "date")
    cj = _get(kubectl, "cronjob", name)
    assert cj["apiVersion"] == "batch/v1" and cj["spec"]["schedule"] == "*/5 * * * *"
    tpl = cj["spec"]["jobTemplate"]
    assert tpl["metadata"]["name"] == name
    assert tpl["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]
    assert tpl["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    # A Job from the CronJob's stored template carries fields newer than the 1.20 descriptors
    # (JobSpec.completionMode = "NonIndexed", defaulted by the server): refused by name, not dropped.
    refused = kubectl("create", "job", f"{name}-now", f"--from=cronjob/{name}", check=False)
    assert refused.returncode != 0
    assert "field 9 of k8s.io.api.batch.v1.JobSpec at spec" in refused.stderr
    assert "send it as application/json" in refused.stderr


def test_create_rbac_objects(kubectl, name: str) -> None:
    kubectl("create", "rolebinding", name, "--clusterrole=view", "--user=alice", "--serviceaccount=default:robot")
    rb = _get(kubectl, "rolebinding", name)
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    assert rb["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
        {"kind": "ServiceAccount", "name": "robot", "namespace": "default"},
    ]
    kubectl("create", "role", name, "--verb=get,list", "--resource=pods")
    assert _get(kubectl, "role", name)["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    ]


def test_create_cluster_rbac_serviceaccount_ingress_autoscale(kubectl, name: str) -> None:
    kubectl("create", "clusterrole", name, "--verb=get", "--resource=nodes")
    assert _get(kubectl, "clusterrole", name)["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}
    ]
    kubectl("create", "clusterrolebinding", name, f"--clusterrole={name}", "--group=ops")
    assert _get(kubectl, "clusterrolebinding", name)["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"}
    ]
    kubectl("create", "serviceaccount", name)
    assert _get(kubectl, "serviceaccount", name)["metadata"]["name"] == name
    kubectl("create", "ingress", name, f"--rule=shop.example.com/api*={name}:80")
    (rule,) = _get(kubectl, "ingress", name)["spec"]["rules"]
    # IngressRule embeds IngressRuleValue inline: "http" sits on the rule itself
    assert rule["host"] == "shop.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/api" and path["pathType"] == "Prefix"
    assert path["backend"] == {"service": {"name": name, "port": {"number": 80}}}
    kubectl("create", "deployment", name, "--image=registry.local/web:1")
    kubectl("autoscale", "deployment", name, "--min=2", "--max=4", "--cpu=60%")
    hpa = _get(kubectl, "hpa", name)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 4
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}


def test_create_service_int_or_string_port(kubectl, name: str) -> None:
    kubectl("create", "service", "clusterip", name, "--tcp=80:8080")
    (port,) = _get(kubectl, "service", name)["spec"]["ports"]
    assert port["port"] == 80 and port["targetPort"] == 8080 and port["protocol"] == "TCP"


def test_auth_can_i_and_whoami(kubectl) -> None:
    assert kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "delete", "nodes").stdout.strip() == "yes"
    restricted = ("--context", "ack-sandbox-restricted")
    assert kubectl(*restricted, "auth", "can-i", "create", "pods").stdout.strip() == "yes"  # in default
    no = kubectl(*restricted, "auth", "can-i", "create", "pods", "-n", "kube-system", check=False)
    assert no.returncode == 1 and no.stdout.strip() == "no"
    assert kubectl(*restricted, "auth", "can-i", "list", "nodes", check=False).stdout.strip() == "no"
    who = kubectl("auth", "whoami", "-o", "json").stdout
    assert json.loads(who)["status"]["userInfo"]["username"] == "kubernetes-admin"
    table = kubectl(*restricted, "auth", "whoami").stdout
    assert "sandbox-developer" in table and "system:authenticated" in table


def test_special_types_convert_as_go_json_does(sandbox: dict, name: str) -> None:
    """Quantity, IntOrString (string form), pointer zeros, inline structs (a volume's source, a probe's handler),
    bytes: a Pod posted in protobuf reads back as the JSON a cluster gives."""
    pod_cls = protobuf.message_class("v1", "Pod")
    assert pod_cls is not None
    pod: Any = pod_cls()
    pod.metadata.name = name
    pod.metadata.creationTimestamp.SetInParent()  # gogo writes the zero Time: JSON null, left out
    spec = pod.spec
    spec.terminationGracePeriodSeconds = 0
    spec.securityContext.runAsUser = 0
    vol = spec.volumes.add(name="cfg")
    vol.volumeSource.configMap.localObjectReference.name = "settings"
    c = spec.containers.add(name="app", image="registry.local/app:1")
    c.resources.limits["memory"].string = "64Mi"
    c.resources.requests["cpu"].string = "250m"
    c.readinessProbe.handler.httpGet.path = "/ready"
    c.readinessProbe.handler.httpGet.port.type = 1
    c.readinessProbe.handler.httpGet.port.strVal = "http"
    c.ports.add(name="http", containerPort=8080)
    code, body = _post(sandbox, "/api/v1/namespaces/default/pods", _envelope("v1", "Pod", pod.SerializeToString()))
    assert code == 201, body
    assert body["kind"] == "Pod" and body["metadata"]["name"] == name
    got = body["spec"]
    assert got["terminationGracePeriodSeconds"] == 0 and got["securityContext"] == {"runAsUser": 0}
    assert got["volumes"][0]["configMap"]["name"] == "settings"
    (container,) = got["containers"]
    # requests.memory: the server's default from the limit
    assert container["resources"] == {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}}
    assert container["readinessProbe"]["httpGet"]["port"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    secret_cls = protobuf.message_class("v1", "Secret")
    assert secret_cls is not None
    secret: Any = secret_cls()
    secret.metadata.name = name
    secret.data["blob"] = b"\x00\xffbinary"
    code, body = _post(
        sandbox, "/api/v1/namespaces/default/secrets", _envelope("v1", "Secret", secret.SerializeToString())
    )
    assert code == 201 and base64.b64decode(body["data"]["blob"]) == b"\x00\xffbinary"


def test_malformed_bodies_get_the_apiservers_400(sandbox: dict) -> None:
    code, status = _post(sandbox, "/api/v1/namespaces/default/configmaps", b'{"kind": "ConfigMap"}')
    assert code == 400 and status["kind"] == "Status" and status["reason"] == "BadRequest"
    # apiserver handlers/rest.go transformDecodeError over the protobuf serializer's prefix check
    assert status["message"] == (
        "the object provided is unrecognized (must be of type ConfigMap): provided data does not appear to be "
        'a protobuf message, expected prefix [107 56 115 0] ({"kind": "ConfigMap"})'
    )
    code, status = _post(sandbox, "/api/v1/namespaces/default/configmaps", protobuf.MAGIC + b"\x0a\xff\xff")
    assert code == 400 and status["message"].startswith(
        "the object provided is unrecognized (must be of type ConfigMap): proto: "
    )
    code, status = _post(sandbox, "/api/v1/namespaces/default/configmaps", protobuf.MAGIC)
    assert code == 400 and "empty body (6b387300)" in status["message"]
    code, status = _post(
        sandbox, "/api/v1/namespaces/default/configmaps", _envelope("v1", "ConfigMap", b"\x0a\x03\xff\xff\xff")
    )
    assert code == 400 and status["message"].startswith('ConfigMap in version "v1" cannot be handled as a ConfigMap')


def test_unknown_and_mismatched_kinds(sandbox: dict) -> None:
    code, status = _post(sandbox, "/api/v1/namespaces/default/configmaps", _envelope("v1", "Gadget", b""))
    assert code == 400 and status["message"] == (
        'Gadget in version "v1" cannot be handled as a ConfigMap: no kind "Gadget" is registered for version "v1" '
        'in scheme "pkg/api/legacyscheme/scheme.go:30"'
    )
    secret_cls = protobuf.message_class("v1", "Secret")
    assert secret_cls is not None
    raw = secret_cls(metadata={"name": "wrong-kind"}).SerializeToString()
    code, status = _post(sandbox, "/api/v1/namespaces/default/configmaps", _envelope("v1", "Secret", raw))
    assert code == 400 and status["reason"] == "BadRequest"


def test_custom_resources_take_json_only(sandbox: dict) -> None:
    path = "/apis/machinelearning.seldon.io/v1/namespaces/default/seldondeployments"
    code, status = _post(sandbox, path, _envelope("machinelearning.seldon.io/v1", "SeldonDeployment", b""))
    assert code == 415 and status["reason"] == "UnsupportedMediaType"


def test_delete_options_in_protobuf(sandbox: dict, kubectl, name: str) -> None:
    """client-go's typed clients send DeleteOptions in their content type: gracePeriodSeconds 0 (a pointer's
    zero) deletes a bound pod at once, where the default 30 s grace would leave it terminating."""
    kubectl("run", name, "--image=busybox", "--restart=Never", "--", "sleep", "300")
    until("pod bound", lambda: _get(kubectl, "pod", name)["spec"].get("nodeName"))
    opts_cls = protobuf.message_class("v1", "DeleteOptions")
    assert opts_cls is not None
    opts: Any = opts_cls(gracePeriodSeconds=0)
    code, body = _post(
        sandbox,
        f"/api/v1/namespaces/default/pods/{name}",
        _envelope("v1", "DeleteOptions", opts.SerializeToString()),
        method="DELETE",
    )
    assert code == 200, body
    gone = kubectl("get", "pod", name, "--ignore-not-found", "-o", "name").stdout.strip()
    assert gone == ""


def _list(name: str, extra: str = "", port: str = "80") -> str:
    return f"""apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {{name: {name}}}
  data: {{a: b}}{extra}
- apiVersion: v1
  kind: Service
  metadata: {{name: {name}}}
  spec: {{ports: [{{port: {port}}}], selector: {{app: {name}}}}}
"""


def test_list_apply_validates_items_against_openapi_v2(kubectl, name: str) -> None:
    """kubectl validates a List's items client-side against /openapi/v2 (gnostic protobuf)."""
    out = kubectl_run_stdin(kubectl, _list(name))
    assert out.stdout.split("\n")[:2] == [f"configmap/{name} created", f"service/{name} created"]
    assert kubectl_run_stdin(kubectl, _list(name)).stdout.count("unchanged") == 2
    bad = kubectl_run_stdin(kubectl, _list(name, extra="\n  bogus: 1"), check=False)
    assert bad.returncode != 0
    assert 'unknown field "bogus" in io.k8s.api.core.v1.ConfigMap' in bad.stderr
    bad = kubectl_run_stdin(kubectl, _list(name, port='"eighty"'), check=False)
    assert 'invalid type for io.k8s.api.core.v1.ServicePort.port: got "string", expected "integer"' in bad.stderr


def test_client_side_apply_merges_lists_by_the_v2_merge_keys(kubectl, name: str, tmp_path: Path) -> None:
    """Client-side apply takes merge keys from /openapi/v2 (the 1.20 spec's x-kubernetes-patch-merge-key): a
    container dropped from the file is removed, the one kept is patched in place."""
    two = f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - {{name: a, image: busybox, command: [sleep, "300"]}}
      - {{name: b, image: busybox, command: [sleep, "300"]}}
"""
    kubectl_run_stdin(kubectl, two)
    kubectl("set", "env", f"deploy/{name}", "-c", "a", "FROM_ELSEWHERE=1")
    one = two.replace('      - {name: b, image: busybox, command: [sleep, "300"]}\n', "").replace(
        "image: busybox,", "image: busybox:2,"
    )
    kubectl_run_stdin(kubectl, one)
    (c,) = _get(kubectl, "deployment", name)["spec"]["template"]["spec"]["containers"]
    assert c["name"] == "a" and c["image"] == "busybox:2"
    assert c["env"] == [{"name": "FROM_ELSEWHERE", "value": "1"}]  # merged by name, not replaced


def _get_raw(sandbox: dict, path: str, accept: str) -> tuple[int, str, bytes]:
    token = json.loads((Path(sandbox["state_dir"]) / "kubernetes" / "tokens.json").read_text())["admin"]
    req = urllib.request.Request(
        sandbox["kubernetes"] + path, headers={"Authorization": f"Bearer {token}", "Accept": accept}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_protobuf_only_accept_gets_protobuf_or_406(sandbox: dict, kubectl, name: str) -> None:
    kubectl("create", "configmap", name, "--from-literal=greeting=hello")
    path = f"/api/v1/namespaces/default/configmaps/{name}"
    _, _, as_json = _get_raw(sandbox, path, "application/json")
    code, ctype, body = _get_raw(sandbox, path, PB)
    assert code == 200 and ctype == PB and body.startswith(protobuf.MAGIC)
    assert protobuf.decode(body, "v1", "ConfigMap") == json.loads(as_json)
    code, ctype, body = _get_raw(sandbox, "/api/v1/namespaces/default/configmaps", PB)
    listed = protobuf.decode(body, "v1", "ConfigMapList")
    assert code == 200 and name in [i["metadata"]["name"] for i in listed["items"]]
    # errors are Status messages
    code, ctype, body = _get_raw(sandbox, f"{path}-missing", PB)
    status = protobuf.decode(body, "v1", "Status")
    assert code == 404 and ctype == PB and status["reason"] == "NotFound" and status["code"] == 404
    # kubectl's Accept (protobuf, then */* or JSON) still gets JSON
    code, ctype, _ = _get_raw(sandbox, path, f"{PB}, */*")
    assert code == 200 and ctype.startswith("application/json")
    # a Job carries fields newer than 1.20 (spec.podReplacementPolicy, defaulted): not encodable → 406
    kubectl("create", "job", name, "--image=busybox", "--", "true")
    code, ctype, body = _get_raw(sandbox, f"/apis/batch/v1/namespaces/default/jobs/{name}", PB)
    assert code == 406 and json.loads(body)["reason"] == "NotAcceptable"
    code, _, body = _get_raw(sandbox, "/api/v1/namespaces/default/configmaps?watch=true", PB)
    assert code == 406
