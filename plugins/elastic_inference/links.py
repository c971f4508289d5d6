"""Operator extra links to the reports a run writes, and where those reports live.

Airflow 3 calls ``get_link`` on the worker when the task ends (``task_runner.finalize``) and stores the URL
in XCom under the link's ``xcom_key``; the UI shows that. The operators push the URL under
:data:`REPORT_URL_KEY` / :data:`LOCUST_URL_KEY` while they run, and the links read it back.

Reports go to ``<reports_dir>/<dag_id>/<run_id>/``: ``reports_dir`` is the operator argument, else the
``ELASTIC_INFERENCE_REPORTS_DIR`` environment variable, else ``$AIRFLOW_HOME/reports``. The link points at the
provider's UI plugin on the Airflow API server (``/elastic-inference/reports/<dag_id>/<run_id>/report.html``,
same origin as the UI, so the Details tab shows it; the UI renders only same-origin or http(s) links, never
``file://``), unless a base URL is configured (operator argument or ``ELASTIC_INFERENCE_REPORTS_BASE_URL``,
e.g. a static web server publishing the reports directory): then ``<base>/<dag_id>/<run_id>/report.html``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

REPORT_URL_KEY = "report_url"
LOCUST_URL_KEY = "locust_report_url"
REPORTS_DIR_ENV = "ELASTIC_INFERENCE_REPORTS_DIR"
REPORTS_BASE_URL_ENV = "ELASTIC_INFERENCE_REPORTS_BASE_URL"
UI_PREFIX = "/elastic-inference"  # where the plugin's app is mounted on the API server
ENDPOINT_URL_KEY = "endpoint_url"

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def reports_root(reports_dir: str | os.PathLike[str] | None = None) -> Path:
    if reports_dir:
        return Path(reports_dir).expanduser()
    if os.environ.get(REPORTS_DIR_ENV):
        return Path(os.environ[REPORTS_DIR_ENV]).expanduser()
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return Path(home).expanduser() / "reports"


def safe_part(value: str) -> str:
    """A run id such as ``manual__2026-11-25T11:35:09+00:00`` as one safe path segment."""
    return _UNSAFE.sub("_", value).strip("._") or "_"


def run_dir(reports_dir: str | os.PathLike[str] | None, dag_id: str, run_id: str) -> Path:
    return reports_root(reports_dir) / safe_part(dag_id) / safe_part(run_id)


def ui_base_path() -> str:
    """The path part of the API server's ``[api] base_url`` ("" at the root), under which the plugin is mounted."""
    base = os.environ.get("AIRFLOW__API__BASE_URL")
    if base is None:
        try:
            from airflow.configuration import conf

            base = conf.get("api", "base_url", fallback="") or ""
        except Exception:  # noqa: BLE001 - no Airflow config here: the UI is at the root
            base = ""
    return urlsplit(base).path.rstrip("/")


def report_url(path: Path, *, reports_dir: str | os.PathLike[str] | None = None, base_url: str | None = None) -> str:
    """The URL a person opens ``path`` (a file under the reports directory) by: the plugin's, or ``base_url``'s."""
    base = base_url or os.environ.get(REPORTS_BASE_URL_ENV)
    path = Path(path).resolve()
    try:
        rel = path.relative_to(reports_root(reports_dir).resolve())
    except ValueError:
        return path.as_uri()  # outside the reports directory: nothing serves it
    if base:
        return base.rstrip("/") + "/" + quote(rel.as_posix())
    if reports_dir and Path(reports_dir).expanduser().resolve() != reports_root().resolve():
        return path.as_uri()  # a directory of the task's own, which the API server's plugin does not read
    return ui_base_path() + UI_PREFIX + "/reports/" + quote(rel.as_posix())


class _XComLink(BaseOperatorLink):
    key = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value: Any = XCom.get_value(ti_key=ti_key, key=self.key)
        return str(value) if value else ""


class ScaleReportLink(_XComLink):
    """The HTML scale-verification report (plots, checks, cost)."""

    name = "Scale report"
    key = REPORT_URL_KEY


class LocustReportLink(_XComLink):
    """locust's own HTML report of the load test."""

    name = "Locust report"
    key = LOCUST_URL_KEY


class EndpointLink(_XComLink):
    """The serving endpoint's predict URL (the ingress task's)."""

    name = "Endpoint"
    key = ENDPOINT_URL_KEY
