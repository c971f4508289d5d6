"""``hashicorp/http-echo``: answers every path with ``-text`` (plus a newline); ``/health`` -> ``{"status":"ok"}``.

Flags as the real binary: ``-listen`` (default ``:5678``), ``-text`` (required), ``-status-code`` (default
200). A cheap container for tests of the kubelet, Services and the ingress that need no TensorFlow.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from aiohttp import web

from ack_sandbox.runtimes import common


@dataclass
class EchoArgs:
    port: int
    text: str
    status_code: int


def parse_args(argv: list[str]) -> EchoArgs:
    p = argparse.ArgumentParser(prog="http-echo", add_help=False)
    p.add_argument("--listen", default=":5678")
    p.add_argument("--text", default=None)
    p.add_argument("--status-code", type=int, default=200)
    ns = p.parse_args(common.go_style_args(argv))
    if ns.text is None:
        print("Missing -text option!", file=sys.stderr)
        raise SystemExit(127)
    _, _, port = ns.listen.rpartition(":")
    if not port.isdigit():
        print(f"invalid -listen {ns.listen!r}: expected [host]:port", file=sys.stderr)
        raise SystemExit(2)
    return EchoArgs(port=int(port), text=ns.text, status_code=ns.status_code)


def create_app(args: EchoArgs) -> web.Application:
    app = web.Application()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def echo(_: web.Request) -> web.Response:
        return web.Response(status=args.status_code, text=args.text + "\n", headers={"X-App-Name": "http-echo"})

    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main(argv: list[str] | None = None) -> int:
    common.setup_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(common.serve(create_app(args), common.pod_ip(), args.port, name="http-echo"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
