"""The FastAPI app the plugin mounts on the Airflow API server (``/elastic-inference``): a run's reports and
its view, behind Airflow's own auth (the UI's session cookie, or a bearer token), read access to the DAG's runs.

The reports are read from the same directory the tasks write them to (``elastic_inference.links.reports_root``:
``ELASTIC_INFERENCE_REPORTS_DIR`` or ``$AIRFLOW_HOME/reports``), so the API server must see it (one machine, or a
shared volume); otherwise publish the directory elsewhere and set ``ELASTIC_INFERENCE_REPORTS_BASE_URL``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from elastic_inference.links import UI_PREFIX, run_dir
from elastic_inference.ui.page import run_page
from elastic_inference.ui.series import SERVED, run_state


def _can_read_runs() -> Any:
    """Airflow's check for GET on the DAG's runs (dag_id from the path), as its own routes do."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return Depends(requires_access_dag("GET", DagAccessEntity.RUN))


def create_app() -> FastAPI:
    app = FastAPI(title="Elastic inference reports", docs_url=None, redoc_url=None, openapi_url=None)
    guard = [_can_read_runs()]

    @app.get("/runs/{dag_id}/{run_id}/view", response_class=HTMLResponse, dependencies=guard)
    def view(dag_id: str, run_id: str) -> HTMLResponse:
        base = f"{_mount()}/runs/{dag_id}/{run_id}"
        reports = f"{_mount()}/reports/{dag_id}/{run_id}"
        return HTMLResponse(run_page(run_id, f"{base}/state.json", reports))

    @app.get("/runs/{dag_id}/{run_id}/state.json", dependencies=guard)
    def state(dag_id: str, run_id: str) -> dict[str, Any]:
        return run_state(run_dir(None, dag_id, run_id))

    @app.get("/reports/{dag_id}/{run_id}/{name}", dependencies=guard)
    def report(dag_id: str, run_id: str, name: str) -> FileResponse:
        if name not in SERVED:  # only the reports and their data, never payloads or logs
            raise HTTPException(404, f"{name!r} is not served: one of {', '.join(SERVED)}")
        path = run_dir(None, dag_id, run_id) / name
        if not path.is_file():
            raise HTTPException(404, f"run {run_id!r} of {dag_id!r} has no {name} (yet)")
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    return app


def _mount() -> str:
    """The app's path as the browser sees it: the API server's base_url path + the plugin's prefix."""
    from elastic_inference.links import ui_base_path

    return ui_base_path() + UI_PREFIX
