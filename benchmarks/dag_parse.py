"""DAG parse time: each DAG file parsed in a fresh interpreter (as the DAG processor does), against a
one-task baseline DAG parsed the same way in the same run. Prints medians and the ratio.

A DAG file must import no SDK at top level; this shows what its imports and construction cost beyond
Airflow's own baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE = """
import pendulum
from airflow.sdk import DAG, task
with DAG("baseline", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    @task
    def one() -> None: ...
    one()
"""
PROBE = """
import json, sys, time
sys.path.append(sys.argv[2])  # as Airflow does: the dags folder goes at the end of sys.path
from airflow.dag_processing.dagbag import DagBag
t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
dt = time.perf_counter() - t0
heavy = sorted(m for m in ("locust", "gevent", "oss2", "alibabacloud_cs20151215", "tensorflow") if m in sys.modules)
print(json.dumps({"seconds": dt, "dags": len(bag.dags), "errors": len(bag.import_errors), "heavy": heavy}))
"""


def parse_once(path: Path, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(REPO / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "baseline").mkdir()
        (home / "baseline" / "baseline_dag.py").write_text(BASELINE)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
            "PYTHONWARNINGS": "ignore",
        }
        targets = {"baseline (1 task)": home / "baseline"} | {
            p.name: p for p in sorted((REPO / "dags").glob("*.py")) if not p.name.startswith("_")
        }
        medians = {}
        for name, path in targets.items():
            runs = [parse_once(path, env) for _ in range(args.runs)]
            medians[name] = statistics.median(r["seconds"] for r in runs)
            last = runs[-1]
            print(
                f"{name:28s} median {medians[name] * 1000:7.1f} ms over {args.runs} runs  "
                f"(dags={last['dags']}, import errors={last['errors']}, heavy SDKs imported={last['heavy'] or 'none'})"
            )
        base = medians.pop("baseline (1 task)")
        for name, value in medians.items():
            print(f"{name:28s} {value / base:5.2f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
