"""Fixtures the integration tests share: the sandbox's Airflow connections, a Kubernetes client, a namespace."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import airflow_env
from tests.integration.support import read_or_none


@pytest.fixture(scope="module")
def k8s_env(sandbox) -> Iterator[dict]:
    """The sandbox's AIRFLOW_CONN_* (kubernetes_default, alibaba_ack_default) set for this module."""
    conns = {k: v for k, v in airflow_env(sandbox).items() if k.startswith("AIRFLOW_CONN_")}
    if "AIRFLOW_CONN_KUBERNETES_DEFAULT" not in conns:
        pytest.fail("the sandbox wrote no AIRFLOW_CONN_KUBERNETES_DEFAULT")
    saved = {k: os.environ.get(k) for k in conns}
    os.environ.update(conns)
    try:
        yield sandbox
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def kube(k8s_env) -> Iterator[Any]:
    """A plain ``kubernetes`` ApiClient on the sandbox kubeconfig: the test's hand on the cluster."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(k8s_env["state_dir"] / "kubeconfig"))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube) -> Iterator[str]:
    from kubernetes import client

    name = f"t-{secrets.token_hex(4)}"
    client.CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(kube).delete_namespace(name)


@pytest.fixture
def pvs(kube) -> Iterator[list[str]]:
    """PV names a test creates; PVs are cluster-scoped, so they are deleted here, not with the namespace."""
    from kubernetes import client

    names: list[str] = []
    yield names
    for name in names:
        read_or_none(lambda n=name: client.CoreV1Api(kube).delete_persistent_volume(n))
