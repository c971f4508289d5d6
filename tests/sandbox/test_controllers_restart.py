"""The kubelet across daemon restarts: ``ack-sandbox down`` leaves no pod process behind, ``up`` on the same
state directory runs the pods again (restartCount + 1, same pod IP), like a rebooted node."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kubernetes import client, config

from ack_sandbox import cli
from tests.helpers import until

pytestmark = pytest.mark.integration


def _pid_of(state_dir: Path, owner: str) -> int:
    pids = json.loads((state_dir / "kubelet" / "pids.json").read_text())
    return next(int(p) for p, o in pids.items() if o == owner)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_down_kills_pod_processes_and_up_restarts_them(tmp_path: Path) -> None:
    state_dir = tmp_path / "sandbox"
    cli.up(state_dir, time_scale=30)
    try:
        core = client.CoreV1Api(config.new_client_from_config(str(state_dir / "kubeconfig")))
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "survivor"},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]},
            },
        )
        first = until(
            "running",
            lambda: (lambda p: p if p.status.phase == "Running" else None)(
                core.read_namespaced_pod("survivor", "default")
            ),
        )
        pid = _pid_of(state_dir, "default/survivor")
        assert _alive(pid)
    finally:
        cli.down(state_dir)
    until("no orphan process", lambda: not _alive(pid), timeout=10)

    cli.up(state_dir, time_scale=30)
    try:
        core = client.CoreV1Api(config.new_client_from_config(str(state_dir / "kubeconfig")))

        def restarted() -> client.V1Pod | None:
            p = core.read_namespaced_pod("survivor", "default")
            st = p.status.container_statuses
            return p if st and st[0].restart_count == 1 and st[0].state.running else None

        again = until("running again after the restart", restarted)
        assert again.status.pod_ip == first.status.pod_ip
        assert again.metadata.uid == first.metadata.uid
        new_pid = _pid_of(state_dir, "default/survivor")
        assert new_pid != pid and _alive(new_pid)
    finally:
        cli.down(state_dir)
    until("no orphan process after the second down", lambda: not _alive(new_pid), timeout=10)
