"""Fixtures of the sandbox's own tests: official kubernetes clients on the session sandbox's kubeconfig."""

from __future__ import annotations

import pytest
from kubernetes import client, config


@pytest.fixture(scope="module")
def kube(sandbox: dict) -> client.ApiClient:
    """An ApiClient for the sandbox (admin context of ``<state_dir>/kubeconfig``)."""
    return config.new_client_from_config(str(sandbox["state_dir"] / "kubeconfig"))


@pytest.fixture(scope="module")
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


@pytest.fixture(scope="module")
def apps(kube: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube)
