"""Fixtures of the sandbox's own tests: official kubernetes clients on the session sandbox's kubeconfig."""

from __future__ import annotations

import subprocess

import pytest
from kubernetes import client, config

from tests.helpers import kubectl_run


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


@pytest.fixture(scope="module")
def kubectl(sandbox: dict, tmp_path_factory: pytest.TempPathFactory):
    """``kubectl`` (from .venv) against the sandbox, with a discovery cache of the module's own."""
    cache = tmp_path_factory.mktemp("kube-cache")

    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return kubectl_run(sandbox, *args, stdin=stdin, check=check, cache_dir=cache)

    return run
