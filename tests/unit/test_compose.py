"""docker-compose.yaml ships no secret (issue 12 item 8): the Fernet key and the JWT secret are required from the
environment, with a message that says how to generate them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"


def test_fernet_key_and_jwt_secret_are_required_not_defaulted() -> None:
    env = yaml.safe_load(COMPOSE.read_text())["x-airflow-common"]["environment"]
    for name, var in (("AIRFLOW__CORE__FERNET_KEY", "FERNET_KEY"), ("AIRFLOW__API_AUTH__JWT_SECRET", "JWT_SECRET")):
        value = env[name]
        # ${VAR:?message}: compose stops with the message when VAR is unset or empty; no ${VAR:-default}
        assert re.fullmatch(rf"\$\{{{var}:\?set {var} in \.env; generate it with: python -c .+\}}", value), value
    assert "change-me" not in COMPOSE.read_text()
