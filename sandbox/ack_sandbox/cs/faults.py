"""Fault injection for the CS stand-in, switched on by tests over ``POST /_sandbox/faults``.

Document (every key optional; POST replaces, DELETE clears)::

    {"throttle":     {"count": 2, "action": "DescribeClusterNodePools", "retry_after": 0},
     "server_error": {"count": 1, "action": "CreateClusterNodePool", "status": 503},
     "no_stock":      ["ecs.gn6i-c4g1.xlarge"],            # no capacity at all (spot or PAYG)
     "no_spot_stock": ["ecs.gn6i-c4g1.xlarge"],            # no spot capacity only
     "no_stock_zones": ["cn-beijing-h"]}                   # nothing in these zones

Throttling looks like Alibaba's API gateway: code ``Throttling.User``, message "Request was denied due
to user flow control." (seen verbatim in turbot/steampipe-plugin-alicloud#483 and handled by code in
terraform-provider-alicloud PRs #7183/#6043). The classic gateway answers it with HTTP **400** (the
reference's §1.6 note); with ``retry_after`` > 0 the sandbox also sends ``x-acs-retry-after`` (ms), which
makes tea-openapi raise ``ThrottlingException`` instead of ``ClientException``. Server errors are
``InternalError``/500 or ``ServiceUnavailable``/503. ``action`` omitted = any action; ``count`` omitted = 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ack_sandbox.cs.errors import CsError


@dataclass
class _Budget:
    count: int
    action: str | None
    extra: dict[str, Any]

    def take(self, action: str) -> bool:
        if self.count <= 0 or (self.action is not None and self.action != action):
            return False
        self.count -= 1
        return True


@dataclass
class Faults:
    throttle: _Budget | None = None
    server_error: _Budget | None = None
    no_stock: set[str] = field(default_factory=set)
    no_spot_stock: set[str] = field(default_factory=set)
    no_stock_zones: set[str] = field(default_factory=set)

    def configure(self, doc: dict[str, Any]) -> None:
        if not isinstance(doc, dict):
            raise ValueError("the faults document must be a JSON object")
        unknown = set(doc) - {"throttle", "server_error", "no_stock", "no_spot_stock", "no_stock_zones"}
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        self.clear()
        for key in ("throttle", "server_error"):
            spec = doc.get(key)
            if spec is not None:
                if not isinstance(spec, dict):
                    raise ValueError(f"{key} must be an object")
                extra = {k: v for k, v in spec.items() if k not in ("count", "action")}
                if key == "server_error" and extra.get("status", 500) not in (500, 502, 503, 504):
                    raise ValueError("server_error.status must be 500, 502, 503 or 504")
                setattr(self, key, _Budget(int(spec.get("count", 1)), spec.get("action"), extra))
        self.no_stock = set(doc.get("no_stock") or [])
        self.no_spot_stock = set(doc.get("no_spot_stock") or [])
        self.no_stock_zones = set(doc.get("no_stock_zones") or [])

    def clear(self) -> None:
        self.throttle = self.server_error = None
        self.no_stock, self.no_spot_stock, self.no_stock_zones = set(), set(), set()

    def describe(self) -> dict[str, Any]:
        def budget(b: _Budget | None) -> dict[str, Any] | None:
            return None if b is None else {"count": b.count, "action": b.action, **b.extra}

        return {
            "throttle": budget(self.throttle),
            "server_error": budget(self.server_error),
            "no_stock": sorted(self.no_stock),
            "no_spot_stock": sorted(self.no_spot_stock),
            "no_stock_zones": sorted(self.no_stock_zones),
        }

    def check(self, action: str) -> None:
        """Raise the injected error for this call, if one is due."""
        if self.throttle is not None and self.throttle.take(action):
            retry_ms = int(self.throttle.extra.get("retry_after", 0))
            headers = {"x-acs-retry-after": str(retry_ms)} if retry_ms > 0 else {}
            raise CsError(400, "Throttling.User", "Request was denied due to user flow control.", headers)
        if self.server_error is not None and self.server_error.take(action):
            status = int(self.server_error.extra.get("status", 500))
            if status == 503:
                raise CsError(
                    503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
                )
            raise CsError(
                status,
                "InternalError",
                "The request processing has failed due to some unknown error, exception or failure.",
            )

    def has_stock(self, instance_type: str, zone: str, spot: bool) -> bool:
        if instance_type in self.no_stock or zone in self.no_stock_zones:
            return False
        return not (spot and instance_type in self.no_spot_stock)
