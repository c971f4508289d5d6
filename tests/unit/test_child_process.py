"""Child processes: no secret in their environment, killed with their process group (issue 12 item 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from elastic_inference.child_process import child_env, kill_group, secret_values, start_options
from elastic_inference.operators.model_upload import UploadCancelled, _Progress

WORKER_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/home/airflow",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONPATH": "/opt/airflow/plugins",
    "AIRFLOW_CONN_ALIBABA_ACK_DEFAULT": '{"login": "LTAIxxxx", "password": "conn-secret"}',
    "AIRFLOW_VAR_API": "var-secret",
    "AIRFLOW__CORE__FERNET_KEY": "fernet-secret",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:db-secret@db/airflow",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIyyyy",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "ak-secret",
    "OSS_ACCESS_KEY_SECRET": "oss-secret",
    "GITHUB_TOKEN": "gh-secret",
    "KUBECONFIG": "/home/airflow/.kube/config",
    "LOCUST_HOST": "http://user:pw@endpoint",
    "LOCUST_LOGLEVEL": "INFO",
}


def test_child_env_keeps_what_an_interpreter_needs_and_no_secret() -> None:
    env = child_env(WORKER_ENV, {"EI_PAYLOAD_FILE": "/tmp/p.json"})
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/airflow",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": "/opt/airflow/plugins",
        "LOCUST_LOGLEVEL": "INFO",
        "EI_PAYLOAD_FILE": "/tmp/p.json",
    }
    text = repr(env)
    assert not [v for v in secret_values(WORKER_ENV) if v in text]


def test_child_env_refuses_a_credential_passed_explicitly() -> None:
    with pytest.raises(ValueError, match="EI_API_TOKEN"):
        child_env(WORKER_ENV, {"EI_API_TOKEN": "x"})


def test_kill_group_stops_the_child_and_its_children() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '30']); time.sleep(30)"],
        **start_options(),
    )
    time.sleep(0.5)
    pgid = os.getpgid(proc.pid)
    assert pgid == proc.pid  # its own group
    kill_group([proc], grace=2)
    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # the grandchild (same group) is gone too
            os.killpg(pgid, 0)
            time.sleep(0.05)


def test_upload_progress_stops_the_upload_once_killed() -> None:
    killed = threading.Event()
    progress = _Progress(_Log(), 100, cancelled=killed)
    cb = progress.file_callback(0)
    cb(10, 100)
    killed.set()
    with pytest.raises(UploadCancelled):
        cb(20, 100)


class _Log:
    def info(self, *args: object) -> None:
        pass
