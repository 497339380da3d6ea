"""Baseline: the reverse proxy a Python user writes with aiohttp (server and client), on uvloop.

    python -m bench.pyproxies.aiohttp_proxy --port P --upstream http://127.0.0.1:U [--workers N]

Idiomatic, not a strawman: one pooled ``ClientSession`` per process (keep-alive to the
upstream), request bodies streamed to the upstream (``request.content``), hop-by-hop headers
dropped both ways, access log off, N processes sharing the port with ``SO_REUSEPORT``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})
RESPONSE_DROP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                           "transfer-encoding", "upgrade", "content-length"})


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=0)

    async def on_startup(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
        app["session"] = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60))

    async def on_cleanup(app: web.Application) -> None:
        await app["session"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        data = request.content if request.body_exists else None
        async with app["session"].request(request.method, upstream + request.path_qs,
                                          headers=headers, data=data,
                                          allow_redirects=False) as resp:
            body = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in RESPONSE_DROP}
            return web.Response(status=resp.status, body=body, headers=out)

    app.router.add_route("*", "/{tail:.*}", proxy)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def serve(port: int, upstream: str) -> None:
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(upstream), host="127.0.0.1", port=port, reuse_port=True,
                access_log=None, print=None, handle_signals=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            serve(args.port, args.upstream)
            os._exit(0)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
        raise SystemExit(0)

    if children:
        signal.signal(signal.SIGTERM, forward)
    serve(args.port, args.upstream)
    forward(signal.SIGTERM, None)


if __name__ == "__main__":
    main()
