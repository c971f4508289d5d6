"""The package registers as an Airflow provider with a declarative Alibaba Cloud connection type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from elastic_inference.get_provider_info import get_provider_info


def test_entry_point_points_at_provider_info() -> None:
    eps = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("elastic_inference")]
    assert len(eps) == 1
    assert eps[0].load() is get_provider_info


def test_provider_info_validates_against_airflow_schema() -> None:
    from importlib.resources import files

    import jsonschema
    from airflow import providers_manager  # noqa: F401  (makes sure the schema file ships)

    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_connection_fields_mark_secrets_as_passwords() -> None:
    (conn,) = get_provider_info()["connection-types"]
    fields = conn["conn-fields"]
    assert fields["security_token"]["schema"]["format"] == "password"
    for name in ("role_arn", "region_id", "cs_endpoint", "oss_endpoint", "cluster_id"):
        assert name in fields
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "AccessKey secret"


@pytest.mark.timeout(120)
def test_airflow_cli_lists_the_provider() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=110,
        check=True,
    ).stdout
    packages = {p["package_name"] for p in json.loads(out[out.index("[") :])}
    assert "airflow-provider-elastic-inference" in packages


def test_every_listed_module_and_link_imports() -> None:
    import importlib

    info = get_provider_info()
    modules = [
        m
        for section in ("hooks", "operators", "sensors", "triggers")
        for entry in info[section]
        for m in entry["python-modules"]
    ]
    assert len(modules) >= 15
    for module in modules:
        importlib.import_module(module)
    for link in info["extra-links"]:
        module, _, name = link.rpartition(".")
        assert hasattr(importlib.import_module(module), name), link
    (conn,) = info["connection-types"]
    module, _, name = conn["hook-class-name"].rpartition(".")
    assert getattr(importlib.import_module(module), name).conn_type == conn["connection-type"]
