"""proxy.py (abhinavsingh/proxy.py) in reverse-proxy mode: every path to the upstream.

    BENCH_UPSTREAM=http://127.0.0.1:U proxy --enable-reverse-proxy \
        --plugins bench.pyproxies.proxypy_reverse.BenchReverseProxy --port P
"""
from __future__ import annotations

import os

from proxy.http import Url
from proxy.http.server import ReverseProxyBasePlugin

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8080").encode()


class BenchReverseProxy(ReverseProxyBasePlugin):
    def routes(self):
        return [r"/.*$"]

    def handle_route(self, request, pattern):
        # A dynamic route keeps the client's path (a static one would replace it).
        return Url.from_bytes(UPSTREAM + (request.path or b"/"))
