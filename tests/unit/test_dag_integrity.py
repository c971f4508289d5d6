"""Every DAG file in dags/ imports cleanly, without network or SDK imports at top level."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

HEAVY_MODULES = ("locust", "gevent", "oss2", "alibabacloud_cs20151215", "kubernetes.client", "tensorflow")


def test_dagbag_has_no_import_errors(repo_root: Path) -> None:
    before = set(sys.modules)
    bag = DagBag(dag_folder=str(repo_root / "dags"))
    assert bag.import_errors == {}
    loaded = set(sys.modules) - before
    heavy = sorted(
        m for m in loaded if m.split(".")[0] in {h.split(".")[0] for h in HEAVY_MODULES} and m in HEAVY_MODULES
    )
    assert heavy == [], f"DAG files imported heavy SDKs at top level: {heavy}"
    dag_files = {p.name for p in (repo_root / "dags").glob("*.py") if not p.name.startswith("_")}
    assert {Path(d.fileloc).name for d in bag.dags.values()} >= dag_files
