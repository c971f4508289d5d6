"""CS OpenAPI errors as the ACK gateway sends them: a JSON body ``{"code","message","requestId"}``.

Body shape and codes: reference alibaba-ack-seldon-hpa.md §1.6 (terraform-provider-alicloud issue
#6502 for the ACK body; ``ErrorNodePoolNotFound``/``ErrorClusterNotFound`` as handled in
terraform-provider-alicloud ``service_alicloud_cs.go``). The SDK raises ``ClientException`` for 4xx and
``ServerException`` for 5xx, reading ``code``/``message``/``requestId`` from the body.
"""

from __future__ import annotations

import uuid


def new_request_id() -> str:
    """Alibaba request ids are upper-case UUIDs, e.g. ``B395284E-9787-4083-9BCF-762FCD230402``."""
    return str(uuid.uuid4()).upper()


class CsError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "requestId": request_id, "status": self.status}


def invalid(field: str, message: str, code: str = "InvalidParameter") -> CsError:
    """A 400 naming the request field at fault, e.g. ``scaling_group.instance_types: ...``."""
    return CsError(400, code, f"{field}: {message}")


def cluster_not_found(cluster_id: str) -> CsError:
    return CsError(404, "ErrorClusterNotFound", f"The specified cluster {cluster_id} is not found.")


def nodepool_not_found(nodepool_id: str) -> CsError:
    return CsError(404, "ErrorNodePoolNotFound", f"The specified node pool {nodepool_id} is not found.")
