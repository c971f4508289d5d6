"""Seed steps 5–6: an Ingress to the Seldon predictor Service; waits for its address, hands the predict URL on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from elastic_inference import manifests
from elastic_inference.k8s_objects import SELDON_PREDICT_PATH, Json, predict_url
from elastic_inference.links import ENDPOINT_URL_KEY, EndpointLink
from elastic_inference.operators._kubernetes import KubernetesApplyOperator
from elastic_inference.triggers.ingress import IngressAddressTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


def ingress_rule(ing: Json) -> tuple[str, str]:
    """(host, path) of the first rule's first path: what a client must send to reach the backend."""
    rules = (ing.get("spec") or {}).get("rules") or [{}]
    paths = (rules[0].get("http") or {}).get("paths") or [{}]
    return rules[0].get("host") or "", paths[0].get("path") or "/"


class CreateIngressOperator(KubernetesApplyOperator):
    """Create or patch the Ingress, wait for ``status.loadBalancer.ingress[0]``, return the predict URL.

    XCom: ``{"name", "namespace", "uid", "action", "address", "port", "predict_url", "host_header", "path",
    "api_path"}``;
    ``predict_url`` is ``http://<address>[:port][<path>]<api_path>``: Seldon's ``/api/v1.0/predictions``, or with
    ``serving=`` the serving backend's predict path (KServe: ``/v1/models/<model>:predict``). With a host rule,
    send ``Host: <host_header>``.

    With ``serving=`` (see the base class), namespace, name, backend Service (the predictor), its port, the
    predict path (the serving backend's) and host come from the serving spec.

    :param name: Ingress name. (templated)
    :param service_name: backend Service, e.g. the DeploySeldonOperator's ``service`` XCom. (templated)
    :param service_port: backend port (Seldon's http port 8000).
    :param host: host rule (empty: any host). (templated)
    :param path: path prefix routed to the service. (templated)
    :param ingress_class: ``spec.ingressClassName`` (None: the cluster's default class).
    :param api_path: path appended for the predict URL.
    """

    operator_extra_links = (EndpointLink(),)
    template_fields: Sequence[str] = (
        *KubernetesApplyOperator.template_fields,
        "name",
        "service_name",
        "host",
        "path",
        "ingress_class",
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        service_name: str | None = None,
        service_port: int = 8000,
        host: str | None = None,
        path: str = "/",
        ingress_class: str | None = None,
        scheme: str = "http",
        api_path: str = SELDON_PREDICT_PATH,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.service_name = service_name
        self.service_port = service_port
        self.host = host
        self.path = path
        self.ingress_class = ingress_class
        self.scheme = scheme
        self.api_path = api_path

    def apply_specs(self) -> None:
        """Take the names from the (rendered) serving spec, when given: the Service, its port and the predict path
        are the serving backend's (:mod:`elastic_inference.serving`)."""
        serving = self.serving_spec()
        if serving is not None:
            from elastic_inference.serving.base import get_backend

            backend = get_backend(serving.serving_backend)
            self.name, self.service_name = serving.name, serving.predictor_service
            self.service_port = backend.service_port
            self.api_path = backend.predict_path.format(model_name=serving.model_name)
            self.host = serving.ingress_host

    def execute(self, context: Context) -> Any:
        self.apply_specs()
        if self.manifest:
            objs = self.manifest_objects([])
        else:
            if not self.name:
                raise AirflowFailException(f"{self.task_id}: name is empty; pass the Ingress name or serving=")
            if not self.service_name:
                raise AirflowFailException(f"{self.task_id}: service_name is empty; pass the predictor Service name")
            objs = manifests.render(
                "ingress.yaml.j2",
                dict(
                    name=self.name,
                    namespace=self.namespace,
                    ingress_class=self.ingress_class or "",
                    host=self.host or "",
                    path=self.path or "/",
                    service_name=self.service_name,
                    service_port=int(self.service_port),
                ),
                self.template_dir,
            )
        ing = self.apply_with_primary(objs, "Ingress")
        host, path = ingress_rule(ing.object)
        carry = {
            "name": ing.object["metadata"]["name"],
            "namespace": ing.object["metadata"].get("namespace"),
            "uid": ing.uid,
            "action": ing.action,
            "resource_version": ing.resource_version,
            "host_header": host,
            "path": path,
            "api_path": self.api_path,  # the backend's predict path; result() may run in another process
        }
        if not self.wait_for_completion:
            return carry
        trigger = IngressAddressTrigger(
            access=self.access.to_dict(),
            namespace=carry["namespace"],
            name=carry["name"],
            deadline=self.deadline(),
            watch_timeout_seconds=self.watch_timeout_seconds,
        )
        return self.wait_or_defer(context, trigger, carry)

    def result(self, context: Context, event: Json, carry: dict[str, Any]) -> Any:
        api_path = carry.get("api_path") or self.api_path
        url = predict_url(event["address"], event.get("port"), carry.get("path") or "/", self.scheme, api_path)
        self.log.info("Predict URL: %s%s", url, f" (Host: {carry['host_header']})" if carry.get("host_header") else "")
        if (ti := context.get("ti")) is not None:  # a bare context (no task instance) has no links to feed
            ti.xcom_push(key=ENDPOINT_URL_KEY, value=url)  # the task's "Endpoint" extra link
        return {**carry, "address": event["address"], "port": event.get("port"), "predict_url": url}
