"""``elastic_inference``: a trained model to a verified, autoscaling inference endpoint on ACK.

One task group per step of the manual procedure (``seed/elastic-inference-procedure.md``):
node pool → model to OSS → OSS volume → Seldon deployment + HPA → ingress → smoke test, then load test and
scale verification. When a version already serves, the new one goes up as a canary beside it and the rollout
group analyses it (canary Ingress weights, compared with the stable version), optionally asks for approval, and
promotes it (rolling update) or rolls it back; the verification then runs on the result. Runs on the model Asset the training DAG produces (redeploy after training), from the UI
(Params with JSON schemas) or over REST. Targets real ACK or the local sandbox; only connections differ:
``alibaba_ack_default`` (CS/OSS) and ``kubernetes_default``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from _assets import ENDPOINT_ALIAS, MODEL_ASSET, OSS_MODEL_ASSET
from airflow.sdk import DAG, Param, TaskGroup, chain, get_current_context, task

from elastic_inference.deadline import deadline_alert
from elastic_inference.operators.ingress import CreateIngressOperator
from elastic_inference.operators.load_test import LocustLoadTestOperator
from elastic_inference.operators.model_upload import ModelUploadOperator
from elastic_inference.operators.node_pool import AckNodePoolOperator
from elastic_inference.operators.rollout import CanaryAnalysisOperator, CanaryApprovalOperator, PromoteCanaryOperator
from elastic_inference.operators.seldon import DeploySeldonOperator
from elastic_inference.operators.smoke_test import PredictionSmokeTestOperator
from elastic_inference.operators.teardown import DeleteKubernetesObjectsOperator
from elastic_inference.operators.verify import ScaleVerificationOperator
from elastic_inference.operators.volume import CreateOssVolumeOperator
from elastic_inference.params import FORM_PARAMS, expected_duration

PLAN = "plan"


def _plan(spec: str, field: str | None = None) -> str:
    """Template of one resolved spec (a dict, passed whole) or, for the few plain arguments, one of its fields;
    the DAG renders natively, so numbers and mappings arrive as such."""
    path = f"['{spec}']" + (f"['{field}']" if field else "")
    return "{{ ti.xcom_pull(task_ids='" + PLAN + "')" + path + " }}"


def _xcom(task_id: str, key: str | None = None) -> str:
    return "{{ ti.xcom_pull(task_ids='" + task_id + "')" + (f"['{key}']" if key else "") + " }}"


def _skip_upload_on_rollback(context: Any) -> None:
    """``rollout.rollback_to``: the version is already in OSS; nothing is uploaded (or overwritten)."""
    from airflow.sdk.exceptions import AirflowSkipException

    rollout = (context["ti"].xcom_pull(task_ids=PLAN) or {}).get("rollout") or {}
    if rollout.get("rollback_to"):
        raise AirflowSkipException(f"rollback to version {rollout['rollback_to']}: it is in OSS already")


with DAG(
    dag_id="elastic_inference",
    description="Trained model → verified elastic inference endpoint on ACK (node pool, OSS, Seldon, HPA, ingress). "
    + expected_duration({}),
    schedule=(MODEL_ASSET | OSS_MODEL_ASSET),  # a training DAG's model, or a new version in OSS (the watcher)
    deadline=deadline_alert(),  # ELASTIC_INFERENCE_VERDICT_DEADLINE_MINUTES: no verdict by then → log + notifier
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10), "retry_exponential_backoff": True},
    params={name: Param(**form) for name, form in FORM_PARAMS.items()},
    tags=["ack", "seldon", "kserve", "inference"],
    doc_md=__doc__,
) as dag:

    @task(task_id=PLAN, retries=0)
    def plan(triggering_asset_events: Any = None) -> dict[str, Any]:
        """Resolve inputs (params, or the model Asset event that triggered the run) into the run specs and
        reject bad ones - every spec's problems at once - before anything is created."""
        from elastic_inference.preflight import check
        from elastic_inference.specs.run import plan_run

        events = sorted(
            (e for asset in (MODEL_ASSET, OSS_MODEL_ASSET) for e in (triggering_asset_events or {}).get(asset) or []),
            key=lambda e: e.timestamp,
        )
        # preflight: the volume's read-only connection, the namespace in the cluster (reads only)
        return plan_run(dict(get_current_context()["params"]), events[-1].extra if events else None, preflight=check)

    planned = plan()

    with TaskGroup("node_pool", tooltip="Seed step 1: elastic node pool") as node_pool:
        AckNodePoolOperator(
            task_id="ensure_node_pool",
            node_pool=_plan("node_pool"),
            wait_for_active=True,
            deferrable=True,
            poll_interval=5.0,
        )

    with TaskGroup("model", tooltip="Seed step 2: model to OSS") as model:
        ModelUploadOperator(
            task_id="upload_model", model=_plan("model"), create_bucket=True, pre_execute=_skip_upload_on_rollback
        )

    with TaskGroup("volume", tooltip="Seed step 3: OSS-backed PV/PVC") as volume:
        CreateOssVolumeOperator(
            task_id="oss_volume",
            serving=_plan("serving"),
            model=_plan("model"),
            deferrable=True,
            timeout=300,
            trigger_rule="none_failed",  # the upload is skipped on a rollback
        )

    with TaskGroup(
        "serving", tooltip="Seed step 4: the serving object (SeldonDeployment or InferenceService) + HPA"
    ) as serving:
        DeploySeldonOperator(
            task_id="seldon_deployment",
            serving=_plan("serving"),
            rollout=_plan("rollout"),
            deferrable=True,
            timeout=900,
        )

    with TaskGroup("ingress", tooltip="Seed steps 5-6: ingress and its address") as ingress:
        CreateIngressOperator(task_id="ingress", serving=_plan("serving"), deferrable=True, timeout=300)

    deployed, routed = _xcom("serving.seldon_deployment"), _xcom("ingress.ingress")
    with TaskGroup(
        "rollout", tooltip="Canary beside the stable version: analyse, approve, promote or roll back"
    ) as rollout:
        analysis = CanaryAnalysisOperator(
            task_id="canary_analysis",
            deployment=deployed,
            ingress=routed,
            rollout=_plan("rollout"),
            samples_path=_plan("model", "samples_path"),
            retries=0,
        )
        approval = CanaryApprovalOperator(
            task_id="approval",
            deployment=deployed,
            ingress=routed,
            analysis=_xcom("rollout.canary_analysis"),
            rollout=_plan("rollout"),
            retries=0,
        )
        promote = PromoteCanaryOperator(
            task_id="promote",
            serving=_plan("serving"),
            deployment=deployed,
            ingress=routed,
            analysis=_xcom("rollout.canary_analysis"),
            rollout=_plan("rollout"),
            samples_path=_plan("model", "samples_path"),
            timeout=900,
            retries=0,
        )
        analysis >> approval >> promote

    predict_url = "{{ ti.xcom_pull(task_ids='ingress.ingress')['predict_url'] }}"
    host_header = "{{ ti.xcom_pull(task_ids='ingress.ingress')['host_header'] }}"
    target = _xcom("rollout.promote")  # the stable object after the rollout and the version under test
    with TaskGroup("verify", tooltip="Seed steps 7-8: test the endpoint, load it, verify it scaled") as verify:
        smoke = PredictionSmokeTestOperator(
            task_id="smoke_test",
            predict_url=predict_url,
            samples_path=_plan("model", "samples_path"),
            protocol=_xcom("serving.seldon_deployment", "protocol"),
            min_accuracy=_plan("rollout", "min_agreement"),
            host_header=host_header,
            version_check=target,
        )
        load = LocustLoadTestOperator(
            task_id="load_test",
            load_test=_plan("load_test"),
            host=predict_url,
            protocol=_xcom("serving.seldon_deployment", "protocol"),
            samples_path=_plan("model", "samples_path"),
            request_headers={"Host": host_header},
            namespace=_plan("serving", "namespace"),
            deployment_name=_xcom("rollout.promote", "deployment"),
            version_check=target,
            min_agreement=_plan("rollout", "min_agreement"),
            node_pool_id="{{ ti.xcom_pull(task_ids='node_pool.ensure_node_pool', key='nodepool_id') }}",
            retries=0,
        )
        scale_check = ScaleVerificationOperator(
            task_id="scale_verification",
            load_test_task_id="verify.load_test",
            load_test=_plan("load_test"),
            ack_conn_id="alibaba_ack_default",
            retries=0,
            # The report is written when the load test broke its SLO too (its verdict names the breach).
            trigger_rule="all_done",
        )
        smoke >> load >> scale_check

    ns = _plan("serving", "namespace")
    teardown = DeleteKubernetesObjectsOperator(
        task_id="teardown",
        enabled=_plan("teardown"),
        objects=[
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "namespace": ns,
                "name": _plan("serving", "name"),
            },
            _plan("serving", "serving_objects"),  # the serving backend's object(s)
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": ns,
                "name": _plan("serving", "pvc_name"),
            },
            {"apiVersion": "v1", "kind": "PersistentVolume", "name": _plan("serving", "pv_name")},
            {"apiVersion": "v1", "kind": "Secret", "namespace": ns, "name": _plan("serving", "secret_name")},
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "namespace": ns,
                "name": "{{ ti.xcom_pull(task_ids='plan')['serving']['name'] }}-tfserving-v"
                "{{ ti.xcom_pull(task_ids='plan')['serving']['model_version'] }}",
            },
        ],
    ).as_teardown(setups=[planned])

    chain(planned, [node_pool, model], volume, serving, ingress, rollout, verify, teardown)

    @task(task_id="endpoint", outlets=[ENDPOINT_ALIAS], retries=0)
    def endpoint(outlet_events: Any = None) -> dict[str, Any] | None:
        """The endpoint Asset ack://<cluster>/<namespace>/<name> (verdict, version, endpoint, report in extra),
        emitted only when the deployment verified (and a canary was promoted)."""
        from elastic_inference.endpoint_asset import publish

        return publish(get_current_context(), outlet_events, ENDPOINT_ALIAS)

    chain(verify, endpoint(), teardown)
