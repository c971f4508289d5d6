"""The Airflow plugin: the reports app on the API server and the "Scale-out" view on the DAG run and task
instance pages (Airflow 3.1+ ``external_views``; ``{DAG_ID}``/``{RUN_ID}`` are filled in by the UI).

Registered through the ``airflow.plugins`` entry point (pyproject.toml), which Airflow always loads
(``_load_entrypoint_plugins``; a provider's own ``plugins`` list is read only when
``core.lazy_discover_providers`` is off). ``plugins/.airflowignore`` keeps this package out of the plugins-folder
scan of a checkout whose ``plugins/`` is Airflow's plugins folder, which would register it a second time.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from elastic_inference.links import UI_PREFIX
from elastic_inference.ui.app import create_app

_VIEW = UI_PREFIX + "/runs/{DAG_ID}/{RUN_ID}/view"


class ElasticInferencePlugin(AirflowPlugin):
    name = "elastic_inference"
    fastapi_apps = [{"app": create_app(), "url_prefix": UI_PREFIX, "name": "Elastic inference reports"}]
    external_views = [
        {
            "name": "Scale-out",
            "href": _VIEW,
            "destination": "dag_run",
            "url_route": "elastic-inference-run",
        },
        {
            "name": "Scale-out",
            "href": _VIEW,
            "destination": "task_instance",
            "url_route": "elastic-inference-task",
        },
    ]
