"""Baseline: an ASGI reverse proxy served by uvicorn (httptools, uvloop) with a pooled client.

    BENCH_UPSTREAM=http://127.0.0.1:U BENCH_ASGI_CLIENT=httpx \
        uvicorn bench.pyproxies.asgi_proxy:app --loop uvloop --http httptools --no-access-log

``BENCH_ASGI_CLIENT`` picks the upstream client: ``httpx`` (``AsyncClient``, what FastAPI and
Starlette users reach for) or ``aiohttp`` (``ClientSession``). One pooled client per worker
process, created in the lifespan startup; request bodies streamed to the upstream, response
bodies streamed back; hop-by-hop headers dropped both ways.
"""
from __future__ import annotations

import os

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8080")
CLIENT = os.environ.get("BENCH_ASGI_CLIENT", "httpx")

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"host"})

_client = None


async def _startup() -> None:
    global _client
    if CLIENT == "aiohttp":
        import aiohttp
        _client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60))
    else:
        import httpx
        _client = httpx.AsyncClient(
            base_url=UPSTREAM, timeout=httpx.Timeout(60.0, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256,
                                keepalive_expiry=60))


async def _shutdown() -> None:
    if _client is not None:
        await (_client.close() if CLIENT == "aiohttp" else _client.aclose())


async def _body(receive):
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        more = message.get("more_body", False)


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP]
    has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    path = target.decode("latin-1")
    body = _body(receive) if has_body else None
    if CLIENT == "aiohttp":
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        async with _client.request(scope["method"], UPSTREAM + path, headers=headers,
                                   data=body, allow_redirects=False) as resp:
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": [(k, v) for k, v in resp.raw_headers
                                    if k.lower() not in HOP_BY_HOP]})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    else:
        request = _client.build_request(scope["method"], path, headers=headers, content=body)
        resp = await _client.send(request, stream=True)
        try:
            await send({"type": "http.response.start", "status": resp.status_code,
                        "headers": [(k, v) for k, v in resp.headers.raw
                                    if k.lower() not in HOP_BY_HOP]})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await resp.aclose()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
