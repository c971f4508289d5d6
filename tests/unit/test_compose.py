"""docker-compose.yaml ships no secret (issue 12 item 8, issue 18): the Fernet key and the JWT secret are never a
value in the file; every component reads them from the airflow-secrets volume (Airflow's ``_CMD`` form of a
sensitive option), which airflow-init fills on first start - from FERNET_KEY / JWT_SECRET in .env when given,
else freshly generated. ``make compose-check`` runs the stack for real; this is the fast, static part."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"
SECRETS = {"AIRFLOW__CORE__FERNET_KEY": "fernet_key", "AIRFLOW__API_AUTH__JWT_SECRET": "jwt_secret"}


def test_fernet_key_and_jwt_secret_come_from_the_secrets_volume_never_from_the_file() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    env = doc["x-airflow-common"]["environment"]
    for option, file in SECRETS.items():
        assert option not in env, f"{option} has a value in the compose file"
        assert env[f"{option}_CMD"] == f"cat /opt/airflow/secrets/{file}"
    assert "airflow-secrets:/opt/airflow/secrets:ro" in doc["x-airflow-common"]["volumes"]
    init = doc["services"]["airflow-init"]
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    for file in SECRETS.values():
        # generated only when .env gave none and the volume has none yet: a restart keeps the key
        assert f"[ ! -s /opt/airflow/secrets/{file} ]" in script
    assert "Fernet.generate_key()" in script and "secrets.token_urlsafe(32)" in script
    # .env's values pass through only as an empty default, never a literal secret
    assert init["environment"]["FERNET_KEY"] == "${FERNET_KEY:-}"
    assert init["environment"]["JWT_SECRET"] == "${JWT_SECRET:-}"
    assert "change-me" not in COMPOSE.read_text()
