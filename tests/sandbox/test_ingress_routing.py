"""ingress-nginx's routing rules over Ingress/Service/Pod objects (pure logic)."""

from __future__ import annotations

from ack_sandbox.controllers.ingress_routes import RoutingTable, build_routes, host_matches, served


def pod(name: str, ip: str, ready: bool = True, labels: dict | None = None, terminating: bool = False) -> dict:
    meta = {"name": name, "namespace": "seldon", "labels": labels or {"app": "web"}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 9000}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def service(name: str = "web", target: int | str = 9000) -> dict:
    return {
        "metadata": {"name": name, "namespace": "seldon"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8000, "targetPort": target}]},
    }


def ingress(paths: list[tuple[str, str]], host: str | None = None, cls: str | None = None, svc: str = "web") -> dict:
    rule: dict = {
        "http": {
            "paths": [
                {"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": {"number": 8000}}}}
                for p, t in paths
            ]
        }
    }
    if host:
        rule["host"] = host
    spec: dict = {"rules": [rule]}
    if cls:
        spec["ingressClassName"] = cls
    return {"metadata": {"name": "ing", "namespace": "seldon"}, "spec": spec}


def test_ready_endpoints_only_and_named_target_ports() -> None:
    pods = [
        pod("a", "127.1.0.1"),
        pod("b", "127.1.0.2", ready=False),
        pod("c", "127.1.0.3", terminating=True),
        pod("d", "127.1.0.4", labels={"app": "other"}),
    ]
    [route] = build_routes([ingress([("/", "Prefix")])], [service(target="http")], pods)
    assert route.name == "seldon-web-8000"
    assert route.endpoints == ["127.1.0.1:9000"]


def test_round_robin_over_endpoints() -> None:
    [route] = build_routes([ingress([("/", "Prefix")])], [service()], [pod("a", "127.1.0.1"), pod("b", "127.1.0.2")])
    firsts = [route.next_endpoints()[0] for _ in range(4)]
    assert firsts == ["127.1.0.1:9000", "127.1.0.2:9000"] * 2


def test_path_matching_prefix_exact_and_longest_first() -> None:
    table = RoutingTable()
    table.replace(
        build_routes(
            [ingress([("/api", "Prefix"), ("/api/v1.0/predictions", "Exact"), ("/", "Prefix")])], [service()], []
        )
    )
    assert table.match("x", "/api/v1.0/predictions").path == "/api/v1.0/predictions"
    assert table.match("x", "/api/v1.0/predictions/x").path == "/api"
    assert table.match("x", "/api").path == "/api"
    assert table.match("x", "/apix").path == "/"


def test_host_rules_and_default_server() -> None:
    table = RoutingTable()
    table.replace(
        build_routes(
            [ingress([("/only", "Prefix")], host="fashion.example.com"), ingress([("/", "Prefix")])], [service()], []
        )
    )
    assert table.match("fashion.example.com", "/only").host == "fashion.example.com"
    assert table.match("fashion.example.com", "/other") is None  # the host's server has no such path
    assert table.match("127.0.0.1", "/other").host is None
    assert host_matches("*.example.com", "a.example.com") and not host_matches("*.example.com", "a.b.example.com")


def test_ingress_class_filter() -> None:
    assert served(ingress([("/", "Prefix")])) and served(ingress([("/", "Prefix")], cls="nginx"))
    assert not served(ingress([("/", "Prefix")], cls="alb"))
    assert build_routes([ingress([("/", "Prefix")], cls="alb")], [service()], []) == []
