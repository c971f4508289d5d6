"""ingress-nginx's routing rules over Ingress/Service/Pod objects (pure logic)."""

from __future__ import annotations

from ack_sandbox.controllers.ingress_routes import (
    Route,
    RoutingTable,
    build_routes,
    canary_policy,
    host_matches,
    served,
    use_canary,
)


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


# ---- canary (ingress-nginx canary annotations) ----------------------------------------------------------------

CANARY_ANN = "nginx.ingress.kubernetes.io/"


def canary_ingress(name: str, svc: str, created: str, host: str | None = None, **annotations: str) -> dict:
    ing = ingress([("/", "Prefix")], host=host, svc=svc)
    ing["metadata"] = {
        "name": name,
        "namespace": "seldon",
        "creationTimestamp": created,
        "annotations": {
            CANARY_ANN + "canary": "true",
            **{CANARY_ANN + k.replace("_", "-"): v for k, v in annotations.items()},
        },
    }
    return ing


def test_a_canary_is_merged_into_the_main_location_of_the_same_host_and_path() -> None:
    main = ingress([("/", "Prefix")], host="a.example.com")
    other_host = canary_ingress("c-b", "web-v2", "2026-01-01T00:00:01Z", host="b.example.com", canary_weight="50")
    first = canary_ingress("c-1", "web-v2", "2026-01-01T00:00:02Z", host="a.example.com", canary_weight="10")
    second = canary_ingress("c-2", "web-v3", "2026-01-01T00:00:03Z", host="a.example.com", canary_weight="90")
    routes = build_routes([second, main, other_host, first], [service()], [pod("a", "127.1.0.1")])
    [route] = routes  # canaries make no location of their own; the one for b.example.com has no main: ignored
    assert route.canary is not None
    assert (route.canary.ingress, route.canary.name, route.canary.weight) == ("c-1", "seldon-web-v2-8000", 10)
    assert build_routes([other_host], [service()], []) == []


def test_use_canary_precedence_header_cookie_weight() -> None:
    [route] = build_routes(
        [
            ingress([("/", "Prefix")]),
            canary_ingress(
                "c", "web-v2", "2026-01-01T00:00:01Z", canary_by_header="X-C", canary_by_cookie="ck", canary_weight="5"
            ),
        ],
        [service(), {**service("web-v2")}],
        [pod("a", "127.1.0.1")],
    )
    c = route.canary
    assert c is not None and c.endpoints == ["127.1.0.1:9000"]

    def low(a: int, b: int) -> int:
        return a  # always within the weight

    def high(a: int, b: int) -> int:
        return b  # never within a weight < total

    assert use_canary(c, {"X-C": "always"}, high) is True
    assert use_canary(c, {"X-C": "never"}, low) is False
    assert use_canary(c, {"X-C": "other", "Cookie": "ck=always"}, high) is True
    assert use_canary(c, {"X-C": "never", "Cookie": "ck=always"}, low) is False
    assert use_canary(c, {"Cookie": "x=1; ck=never"}, low) is False
    assert use_canary(c, {}, low) is True and use_canary(c, {}, high) is False
    c.endpoints = []
    assert use_canary(c, {"X-C": "always"}, low) is False  # no balancer without endpoints


def test_header_value_pattern_and_weight_total() -> None:
    c = canary_policy(
        canary_ingress(
            "c",
            "web-v2",
            "t",
            canary_by_header="X-R",
            canary_by_header_value="v2",
            canary_weight="1",
            canary_weight_total="1000",
        ),
        "web-v2",
        8000,
    )
    c.endpoints = ["127.1.0.9:9000"]
    assert use_canary(c, {"X-R": "v2"}, lambda a, b: b) is True
    assert use_canary(c, {"X-R": "always"}, lambda a, b: b) is False  # with a value set, "always" means nothing
    seen: list[tuple[int, int]] = []
    use_canary(c, {}, lambda a, b: seen.append((a, b)) or b)
    assert seen == [(1, 1000)]
    p = canary_policy(
        canary_ingress("p", "web-v2", "t", canary_by_header="X-R", canary_by_header_pattern="^v[23]$"), "web-v2", 8000
    )
    p.endpoints = ["127.1.0.9:9000"]
    assert use_canary(p, {"X-R": "v3"}, lambda a, b: b) is True
    assert use_canary(p, {"X-R": "v4"}, lambda a, b: b) is False
    bad = canary_policy(canary_ingress("b", "web-v2", "t", canary_weight="lots"), "web-v2", 8000)
    assert bad.weight == 0  # an invalid annotation is ignored


def test_the_routing_table_document_round_trips_the_canary() -> None:
    [route] = build_routes(
        [ingress([("/", "Prefix")]), canary_ingress("c", "web-v2", "t", canary_weight="20")],
        [service(), service("web-v2")],
        [pod("a", "127.1.0.1")],
    )
    again = Route.from_dict(route.to_dict())
    assert again.canary is not None and again.canary.to_dict() == route.canary.to_dict()
