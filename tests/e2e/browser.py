"""A real browser for the UI test: the system's headless Chromium (Debian package, ``make browser``) driven by
Playwright for Python through ``executable_path`` (Playwright's own browser download is not used).

A plain module, not a test module: ``conftest.py`` and ``test_ui_browser.py`` import from here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.support import SCHEDULER_RUN_TIMEOUT, Background, Standalone

VIEW_ROUTE = "elastic-inference-run"  # the plugin's external view on the DAG run page (url_route)
SCREENSHOTS_ENV = "UI_SCREENSHOTS_DIR"  # set to docs/screenshots to refresh the README's pictures


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.fail(
        "headless Chromium is not installed: run `make browser` (apt-get install chromium); `make test` does it"
    )


def screenshots() -> Path:
    out = Path(os.environ.get(SCREENSHOTS_ENV) or Path(tempfile.gettempdir()) / "ui-screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def run_path(run_id: str) -> str:
    return f"/dags/elastic_inference/runs/{quote(run_id, safe='')}"


def run_dir(standalone: Standalone, run_id: str) -> Path:
    from elastic_inference.links import safe_part

    return Path(standalone.env["ELASTIC_INFERENCE_REPORTS_DIR"]) / "elastic_inference" / safe_part(run_id)


def view_text(page: Any) -> str:
    return page.frame_locator("iframe").first.locator("body").inner_text(timeout=30_000)


def capture_live_view(standalone: Standalone, run: Background) -> dict[str, Any]:
    """Wait for the scheduler run's load test to record, open the run's Scale-out tab in the browser while it
    does, and say what it showed (phase line, the charts drawn, the replicas seen), with a screenshot. Gives up
    as soon as the run itself has ended (its own error is reported by the test that collects it)."""
    deadline = time.monotonic() + SCHEDULER_RUN_TIMEOUT
    while "run_id" not in standalone.started:
        assert not run.done(), "the scheduler run ended before it was triggered"
        assert time.monotonic() < deadline, "the scheduler run was never triggered"
        time.sleep(1)
    run_id = standalone.started["run_id"]
    live, final = run_dir(standalone, run_id) / "timeline.live.json", run_dir(standalone, run_id) / "timeline.json"
    while True:  # the load test writes the live timeline every 2 s while it runs
        assert time.monotonic() < deadline, f"no live timeline at {live}"
        assert not final.exists(), "the load test ended before its live timeline was seen"
        assert not run.done(), "the scheduler run ended before its load test recorded"
        try:
            if len(json.loads(live.read_text())["samples"]) >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(standalone.base + run_path(run_id) + "/plugin/" + VIEW_ROUTE)
        frame = page.frame_locator("iframe").first
        frame.locator("svg path").first.wait_for(timeout=60_000)
        text = view_text(page)
        shot = screenshots() / "ui-live-timeline.png"
        page.screenshot(path=str(shot))
        return {
            "run_id": run_id,
            "text": text,
            "charts": frame.locator("svg").count(),
            "lines": frame.locator("svg path").count(),
            "final_before_done": final.exists(),
            "screenshot": str(shot),
        }
