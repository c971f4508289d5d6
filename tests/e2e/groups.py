"""The two groups of end-to-end modules, each run by one worker (see ``pytest_xdist_make_scheduler``)."""

from __future__ import annotations

from pathlib import PurePosixPath

# Their own DAG runs on the shared trained model (``e2e_model``); no part in the background scheduler run.
OTHER_PATHS = frozenset({"test_canary_dag.py", "test_kserve_dag.py"})


def e2e_group(module: str) -> str | None:
    """The scheduling scope of an end-to-end module (a path under tests/e2e/), None for any other module."""
    path = PurePosixPath(module)
    if path.parent != PurePosixPath("tests/e2e"):
        return None
    return "tests/e2e (other paths)" if path.name in OTHER_PATHS else "tests/e2e (DAG)"
