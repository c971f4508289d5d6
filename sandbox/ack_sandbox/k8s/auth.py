"""Bearer-token authentication and a small authorizer.

Two users per state directory (tokens kept in ``<state_dir>/kubernetes/tokens.json``, mode 0600):
``kubernetes-admin`` (group system:masters: everything) and ``sandbox-developer`` (everything on namespaced
resources in the ``default`` namespace, discovery, nothing else). A request without a valid token gets 401,
a request outside its rights 403 with the RBAC authorizer's message
(plugin/pkg/auth/authorizer/rbac, k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go).
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from ack_sandbox.k8s import errors

ADMIN_USER = "kubernetes-admin"
RESTRICTED_USER = "sandbox-developer"
RESTRICTED_NAMESPACES = frozenset({"default"})


@dataclass(frozen=True)
class User:
    name: str
    admin: bool
    namespaces: frozenset[str] = frozenset()


class Authenticator:
    def __init__(self, tokens_file: Path) -> None:
        tokens_file.parent.mkdir(parents=True, exist_ok=True)
        if tokens_file.exists():
            self.tokens: dict[str, str] = json.loads(tokens_file.read_text())
        else:
            self.tokens = {"admin": secrets.token_urlsafe(32), "restricted": secrets.token_urlsafe(32)}
            tokens_file.write_text(json.dumps(self.tokens, indent=2))
            tokens_file.chmod(0o600)
        self.users = {
            self.tokens["admin"]: User(ADMIN_USER, True),
            self.tokens["restricted"]: User(RESTRICTED_USER, False, RESTRICTED_NAMESPACES),
        }

    def authenticate(self, authorization: str | None) -> User:
        if not authorization or not authorization.startswith("Bearer "):
            raise errors.unauthorized()
        token = authorization[len("Bearer ") :].strip()
        for known, user in self.users.items():
            if hmac.compare_digest(known, token):
                return user
        raise errors.unauthorized()


def authorize(
    user: User,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
    name: str | None,
    subresource: str | None = None,
) -> None:
    if user.admin:
        return
    if namespace and namespace in user.namespaces:
        return
    what = f"{resource}/{subresource}" if subresource else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    why = f'User "{user.name}" cannot {verb} resource "{what}" in API group "{group}" {scope}'
    raise errors.forbidden(group, resource, name or "", why)
