"""The rollout's record: one JSON file beside the run's report (``<reports_dir>/<dag_id>/<run_id>/rollout.json``),
written by the analysis and the promotion, read by the report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROLLOUT_FILE = "rollout.json"


def read_rollout_file(directory: Path) -> dict[str, Any]:
    path = directory / ROLLOUT_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_rollout_file(directory: Path, doc: Mapping[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ROLLOUT_FILE
    merged = {**read_rollout_file(directory), **doc}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)
    return path
