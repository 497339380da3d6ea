"""The proxies the suite runs side by side, and the upstream they all forward to.

Every peer is started on free loopback ports with its own config in the run's temp dir; none
reads a system config (/etc/nginx, /etc/haproxy, /etc/caddy) and none is installed here: a peer
whose program or Python packages are missing is reported as "not installed".

Variants (what the route does besides proxying):

``plain``           proxy every path to the upstream
``limit-count``     APISIX ``limit-count`` + ``prometheus`` (count 10**9: never rejects)
``key-auth``        APISIX ``key-auth`` + ``limit-req`` + ``prometheus`` (``apikey`` header)
``noop5``           the gateway only: five no-op Python plugins (bench/noop_plugins.py)

A peer without an equivalent of a variant raises :class:`Unsupported` with the reason shown in
the table; where a peer has a close but not identical equivalent the server's ``info["note"]``
says what was used.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path

from bench.common import (
    NGINX_COMMON,
    REPO_ROOT,
    BenchError,
    Server,
    find_nginx,
    free_port,
    repo_env,
    spawn,
    spawn_gateway,
    start_hello_upstream,
    start_nginx,
    tool_version,
    wait_ready,
    write_text,
)

API_KEY = "bench-key"
HUGE = 10 ** 9
#: Header every request carries in the key-auth variant.
AUTH_HEADERS = {"apikey": API_KEY}


class Unsupported(Exception):
    """This peer has no equivalent of the scenario's variant."""


# --------------------------------------------------------------------------- upstream

UPSTREAM_SERVER = """\
    upstream sink {{
        server 127.0.0.1:{sink};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{sink};
        location / {{ return 200 "ok\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            default_type text/plain;
            return 200 "hello world\\n";
        }}
        location = /1k {{ root {www}; default_type application/octet-stream; }}
        location = /64k {{ root {www}; default_type application/octet-stream; }}
        # An upload endpoint reads the whole body before it answers (nginx's `return` would
        # answer at once and discard the body, and a streaming proxy would then have to close
        # the client connection): buffer it in memory, then answer from a local sink.
        location = /upload {{
            client_body_buffer_size 2m;
            proxy_pass http://sink;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""

#: path -> (method, expected body length) of the request kinds of scenario 3
PAYLOADS = {"1k": 1024, "64k": 65536}


def start_upstream(nginx: str, tmp: str) -> Server:
    """nginx (1 worker): 12 bytes on every path, 1 KiB and 64 KiB files, POST /upload -> ok
    once the body is read."""
    www = os.path.join(tmp, "www")
    os.makedirs(www, exist_ok=True)
    os.chmod(tmp, 0o755)
    os.chmod(www, 0o755)
    for name, size in PAYLOADS.items():
        path = os.path.join(www, name)
        with open(path, "wb") as fh:
            fh.write((b"0123456789abcdef" * (size // 16 + 1))[:size])
        os.chmod(path, 0o644)
    port = free_port()
    server = start_nginx("upstream", nginx, tmp, 1,
                         UPSTREAM_SERVER.format(port=port, sink=free_port(), www=www), port)
    wait_ready(server)
    return server


# --------------------------------------------------------------------------- TLS and HTTP/2

def make_cert(tmp: str) -> tuple[str, str]:
    """A self-signed ECDSA P-256 certificate for bench.test (openssl CLI)."""
    cert, key = os.path.join(tmp, "bench.crt"), os.path.join(tmp, "bench.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test"],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)  # nginx's workers run as nobody when this runs as root
    return cert, key


NGINX_TLS_PROXY = """\
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 100000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl{http2} reuseport;
        listen 127.0.0.1:{plain}{http2} reuseport;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
{streams}        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


def start_nginx_tls_proxy(nginx: str, tmp: str, upstream: int, cert: str, key: str,
                          http2: bool) -> Server:
    """nginx, one worker, proxying to ``upstream`` (HTTP/1.1 keep-alive) from a TLS port
    (info["tls_port"]) and a plain one (``port``); with ``http2`` both speak HTTP/2 (ALPN h2
    over TLS, h2c with prior knowledge on the plain one: nginx 1.22's syntax)."""
    port, plain = free_port(), free_port()
    body = NGINX_TLS_PROXY.format(
        port=port, plain=plain, upstream=upstream, cert=cert, key=key,
        http2=" http2" if http2 else "",
        streams="        http2_max_concurrent_streams 128;\n" if http2 else "")
    server = start_nginx("nginx", nginx, tmp, 1, body, plain)
    server.info["tls_port"] = port
    return server


GATEWAY_ONE_ROUTE = """\
gateway:
  listen: ["127.0.0.1:{port}"]
{gateway_extra}  admin: {{listen: "127.0.0.1:{admin}"}}
upstreams:
  - id: up
    nodes: [{{host: 127.0.0.1, port: {upstream}}}]
    keepalive: {{size: 64}}
routes:
  - id: all
    uri: /*
    upstream_id: up
{extra}"""
"""The gateway's config in the scripts that compare it with nginx: every path to one upstream,
64 pooled connections (nginx's ``keepalive 64``); ``gateway_extra`` and ``extra`` add to the
``gateway`` section and to the file."""

TLS_SETTINGS = """\
  tls_listen: ["127.0.0.1:{tls_port}"]
  fallback_sni: bench.test
"""

TLS_CERTIFICATE = """\
ssls:
  - id: bench
    snis: [bench.test]
    cert: {cert}
    key: {key}
"""


def start_tls_gateway(tmp: str, upstream: int, cert: str, key: str, python: str | None = None,
                      name: str = "gateway") -> Server:
    """The gateway, one worker, proxying to ``upstream`` from a TLS port (info["tls_port"],
    the certificate for bench.test) and a plain one (``port``); HTTP/2 is negotiated on both
    (ALPN h2, the h2c preface). ``python``: see spawn_gateway."""
    port, plain = free_port(), free_port()
    conf = write_text(tmp, "gateway.yaml", GATEWAY_ONE_ROUTE.format(
        port=plain, admin=free_port(), upstream=upstream,
        gateway_extra=TLS_SETTINGS.format(tls_port=port),
        extra=TLS_CERTIFICATE.format(cert=cert, key=key)))
    server = spawn_gateway(tmp, conf, plain, python=python, name=name)
    server.info["tls_port"] = port
    return server


def start_tls_peers(servers: ExitStack, nginx: str, base: str, cert: str, key: str,
                    http2: bool) -> tuple[Server, Server, Server]:
    """The hello upstream (ready), then nginx (start_nginx_tls_proxy) and the gateway
    (start_tls_gateway) in front of it, in dirs under ``base``; ``servers`` stops them in
    reverse order (the proxies, then the upstream)."""
    upstream = start_hello_upstream(nginx, os.path.join(base, "upstream"))
    servers.callback(upstream.stop)
    wait_ready(upstream)
    proxy = start_nginx_tls_proxy(nginx, os.path.join(base, "nginx"), upstream.port, cert, key,
                                  http2)
    servers.callback(proxy.stop)
    gateway = start_tls_gateway(os.path.join(base, "gateway"), upstream.port, cert, key)
    servers.callback(gateway.stop)
    return upstream, proxy, gateway


def url_of(server: Server, tls: bool) -> str:
    """The root URL of a server started by start_nginx_tls_proxy or start_tls_gateway."""
    return (f"https://127.0.0.1:{server.info['tls_port']}/" if tls
            else f"http://127.0.0.1:{server.port}/")


def alternating(servers: list[Server], runs: int) -> Iterator[tuple[int, Server]]:
    """(run, server) in the order they are measured: every server goes first in turn, so a
    drift in the machine's load spreads over all of them."""
    for run in range(1, runs + 1):
        shift = (run - 1) % len(servers)
        for server in servers[shift:] + servers[:shift]:
            yield run, server


# --------------------------------------------------------------------------- peers

class Peer(ABC):
    name = ""
    #: what the table says about it
    description = ""
    #: the variants this peer can run (others raise Unsupported with `unsupported_reason`)
    variants: tuple[str, ...] = ("plain",)
    unsupported_reason = "no equivalent"

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(installed, version or what is missing)."""

    @abstractmethod
    def start(self, tmp: str, workers: int, upstream_port: int, variant: str = "plain",
              routes: int = 0) -> Server:
        """Starts the peer proxying to ``upstream_port``; raises Unsupported for a variant it
        has no equivalent of."""

    def check_variant(self, variant: str) -> None:
        if variant not in self.variants:
            raise Unsupported(self.unsupported_reason)


def _which(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}",
                                                                       os.X_OK) else None)
        if path:
            return path
    return None


def _modules(*names: str) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def _dist_versions(*names: str) -> str:
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} ?")
    return ", ".join(out)


class Nginx(Peer):
    name = "nginx"
    description = "nginx proxy_pass, upstream keepalive 64"
    variants = ("plain", "limit-count", "key-auth")

    def available(self):
        path = find_nginx()
        return (True, tool_version([path, "-v"])) if path else (False, "nginx not found")

    def start(self, tmp, workers, upstream_port, variant="plain", routes=0):
        self.check_variant(variant)
        port = free_port()
        http_extra, location_extra, note = "", "", ""
        if variant in ("limit-count", "key-auth"):
            # nginx has no fixed-window counter nor a metrics exporter: limit_req (a leaky
            # bucket in shared memory, per client address) is the closest per-request limiter.
            http_extra += ("    limit_req_zone $binary_remote_addr zone=bench:10m "
                           "rate=100000000r/s;\n")
            location_extra += "            limit_req zone=bench burst=100000000 nodelay;\n"
            note = "limit_req for the limiter; no metrics exporter"
        if variant == "key-auth":
            http_extra += (f'    map $http_apikey $bench_key_ok {{ default 0; "{API_KEY}" 1; }}\n')
            location_extra = ("            if ($bench_key_ok = 0) { return 401; }\n"
                              + location_extra)
            note = "map on the apikey header + limit_req; no metrics exporter"
        body = f"""\
{http_extra}    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 100000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        client_max_body_size 0;
        location / {{
{location_extra}            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
        }}
    }}"""
        server = start_nginx("nginx", find_nginx(), tmp, workers, body, port)
        server.info["note"] = note
        return server


class HAProxy(Peer):
    name = "haproxy"
    description = "HAProxy, nbthread = workers"
    variants = ("plain", "limit-count")
    unsupported_reason = "no key-auth equivalent"

    def available(self):
        path = _which("haproxy")
        return (True, tool_version([path, "-v"])) if path else (False, "haproxy not found")

    def start(self, tmp, workers, upstream_port, variant="plain", routes=0):
        self.check_variant(variant)
        os.makedirs(tmp, exist_ok=True)
        port = free_port()
        fe_extra, extra, note = "", "", ""
        if variant == "limit-count":
            # A per-client request counter in a stick table (HAProxy's rate limiting) and the
            # built-in Prometheus exporter on its own port, like the gateway's admin listener.
            prom = free_port()
            fe_extra = ("    stick-table type ip size 100k expire 60s store http_req_rate(60s)\n"
                        "    http-request track-sc0 src\n"
                        f"    http-request deny deny_status 503 if {{ sc_http_req_rate(0) gt {HUGE} }}\n")
            extra = (f"frontend prom\n    bind 127.0.0.1:{prom}\n"
                     "    http-request use-service prometheus-exporter if { path /metrics }\n")
            note = "stick-table request counter + prometheus-exporter"
        conf = os.path.join(tmp, "haproxy.cfg")
        with open(conf, "w") as fh:
            fh.write(f"""\
global
    nbthread {workers}
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:{port}
{fe_extra}    default_backend be
backend be
    server s1 127.0.0.1:{upstream_port} maxconn 1000
{extra}""")
        server = spawn("haproxy", [_which("haproxy"), "-db", "-f", conf], tmp, port)
        server.info["note"] = note
        return server


class Caddy(Peer):
    name = "caddy"
    description = "Caddy reverse_proxy, GOMAXPROCS = workers"
    unsupported_reason = "no built-in rate limiting (needs a third-party module)"

    def available(self):
        path = _which("caddy")
        return (True, tool_version([path, "version"])) if path else (False, "caddy not found")

    def start(self, tmp, workers, upstream_port, variant="plain", routes=0):
        self.check_variant(variant)
        os.makedirs(tmp, exist_ok=True)
        port = free_port()
        conf = os.path.join(tmp, "caddy.json")
        config = {
            "admin": {"disabled": True},
            "logging": {"logs": {"default": {"level": "ERROR"}}},
            "apps": {"http": {"servers": {"bench": {
                "listen": [f"127.0.0.1:{port}"],
                "automatic_https": {"disable": True},
                "routes": [{"handle": [{
                    "handler": "reverse_proxy",
                    "upstreams": [{"dial": f"127.0.0.1:{upstream_port}"}],
                    "transport": {"protocol": "http",
                                  "keep_alive": {"max_idle_conns_per_host": 64}},
                }]}],
            }}}},
        }
        with open(conf, "w") as fh:
            json.dump(config, fh)
        env = dict(os.environ, GOMAXPROCS=str(workers), HOME=tmp,
                   XDG_DATA_HOME=os.path.join(tmp, "data"),
                   XDG_CONFIG_HOME=os.path.join(tmp, "config"))
        return spawn("caddy", [_which("caddy"), "run", "--config", conf], tmp, port, env=env)


def gateway_config(port: int, admin: int, upstream_port: int, variant: str = "plain",
                   routes: int = 0) -> dict:
    """The gateway's config (a dict; written as JSON, which YAML reads)."""
    plugins: dict = {}
    consumers: list = []
    if variant == "limit-count":
        plugins = {"limit-count": {"count": HUGE, "time_window": 60, "key": "remote_addr",
                                   "rejected_code": 503},
                   "prometheus": {}}
    elif variant == "key-auth":
        plugins = {"key-auth": {},
                   "limit-req": {"rate": HUGE, "burst": HUGE, "key": "remote_addr",
                                 "rejected_code": 503, "nodelay": True},
                   "prometheus": {}}
        consumers = [{"username": "bench", "plugins": {"key-auth": {"key": API_KEY}}}]
    elif variant == "noop5":
        plugins = {f"bench.noop_plugins:Noop{i}": {} for i in range(1, 6)}
    elif variant != "plain":
        raise Unsupported(f"unknown variant {variant}")
    route_list = generated_routes(routes)
    route_list.append({"id": "all", "uri": "/*", "upstream_id": "up", "plugins": plugins})
    return {
        "gateway": {"listen": [f"127.0.0.1:{port}"], "admin": {"listen": f"127.0.0.1:{admin}"}},
        "upstreams": [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream_port}],
                       "keepalive": {"size": 64, "requests": 100000}}],
        "routes": route_list,
        "consumers": consumers,
    }


def route_pattern(i: int) -> tuple[str, str]:
    """(pattern, a path it matches) of generated route i: params, prefixes and exact paths
    mixed, the way an API's route table looks."""
    kind = i % 4
    if kind == 0:
        return f"/api/v1/svc{i}/users/:id", f"/api/v1/svc{i}/users/42"
    if kind == 1:
        return f"/static/svc{i}/*", f"/static/svc{i}/css/site.css"
    if kind == 2:
        return f"/api/v2/svc{i}/orders/:order/items/:item", f"/api/v2/svc{i}/orders/7/items/9"
    return f"/exact/svc{i}/health", f"/exact/svc{i}/health"


def generated_routes(count: int) -> list[dict]:
    return [{"id": f"r{i}", "uri": route_pattern(i)[0], "upstream_id": "up"}
            for i in range(count)]


def plugins_available(names: list[str]) -> dict[str, str]:
    """name -> "" when the gateway can load the plugin, else the reason (checked in a child
    process: the harness itself never imports the native module)."""
    code = ("import json, sys\n"
            "from gateway.plugins.registry import get_plugin_class\n"
            "out = {}\n"
            "for name in sys.argv[1:]:\n"
            "    try:\n"
            "        get_plugin_class(name); out[name] = ''\n"
            "    except (KeyError, ImportError, AttributeError) as exc:\n"
            "        out[name] = f'{type(exc).__name__}: {exc}'\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                          env=repo_env(), cwd=REPO_ROOT, timeout=60)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["gateway not importable"])[-1]
        return dict.fromkeys(names, reason)
    return json.loads(proc.stdout)


VARIANT_PLUGINS = {"limit-count": ["limit-count", "prometheus"],
                   "key-auth": ["key-auth", "limit-req", "prometheus"],
                   "noop5": [f"bench.noop_plugins:Noop{i}" for i in range(1, 6)]}


class Gateway(Peer):
    name = "gateway"
    description = "this repository's gateway, -w workers"
    variants = ("plain", "limit-count", "key-auth", "noop5")

    def available(self):
        proc = subprocess.run([sys.executable, "-c", "import gateway._native, gateway._proto"],
                              env=repo_env(), capture_output=True, text=True, cwd=REPO_ROOT)
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or [""])[-1]
            return False, f"not built (pip install -e .): {detail}"
        return True, f"gateway {_git_head()}"

    def start(self, tmp, workers, upstream_port, variant="plain", routes=0):
        self.check_variant(variant)
        missing = {}
        if variant in VARIANT_PLUGINS:
            missing = {k: v for k, v in plugins_available(VARIANT_PLUGINS[variant]).items() if v}
        if missing:
            raise Unsupported("skipped: plugin not available (" + ", ".join(missing) + ")")
        port, admin = free_port(), free_port()
        conf = write_text(tmp, "gateway.yaml", json.dumps(
            gateway_config(port, admin, upstream_port, variant, routes), indent=1))
        env = repo_env(XDG_STATE_HOME=os.path.join(tmp, "state"))
        if variant != "plain":
            check = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", conf],
                                   capture_output=True, text=True, env=env, cwd=tmp, timeout=60)
            if check.returncode != 0:
                text = (check.stdout + check.stderr).strip().replace("\n", " ")
                raise Unsupported(f"skipped: config rejected: {text[:300]}")
        server = spawn_gateway(tmp, conf, port, workers=workers, env=env)
        from gateway.server.state import InstanceState

        instance = InstanceState(conf, Path(tmp) / "state" / "gateway")
        server.info.update(conf=conf, admin=admin, state=str(instance.directory),
                           workers=workers, config=gateway_config(port, admin, upstream_port,
                                                                  variant, routes))
        return server


def _git_head() -> str:
    try:
        proc = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        return proc.stdout.strip() or "?"
    except OSError:
        return "?"


class AiohttpProxy(Peer):
    name = "aiohttp"
    description = "aiohttp server + pooled aiohttp client, uvloop, N processes (SO_REUSEPORT)"

    def available(self):
        missing = _modules("aiohttp", "uvloop")
        if missing:
            return False, "missing " + ", ".join(missing)
        return True, _dist_versions("aiohttp", "uvloop")

    def start(self, tmp, workers, upstream_port, variant="plain", routes=0):
        self.check_variant(variant)
        port = free_port()
        cmd = [sys.executable, "-m", "bench.pyproxies.aiohttp_proxy", "--port", str(port),
               "--upstream", f"http://127.0.0.1:{upstream_port}", "--workers", str(workers)]
        return spawn("aiohttp", cmd, tmp, port, env=repo_env(), expected_procs=workers)


class UvicornProxy(Peer):
    description = "uvicorn (httptools, uvloop) ASGI proxy, --workers N"

    def __init__(self, client: str) -> None:
        self.client = client
        self.name = f"uvicorn-{client}"
        self.description = f"uvicorn (httptools, uvloop) ASGI proxy + pooled {client} client"

    def available(self):
        missing = _modules("uvicorn", "httptools", "uvloop", self.client)
        if missing:
            return False, "missing " + ", ".join(missing)
        return True, _dist_versions("uvicorn", "httptools", self.client)

    def start(self, tmp, workers, upstream_port, variant="plain", routes=0):
        self.check_variant(variant)
        port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", "bench.pyproxies.asgi_proxy:app",
               "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
               "--http", "httptools", "--no-access-log", "--log-level", "warning",
               "--lifespan", "on", "--workers", str(workers)]
        env = repo_env(BENCH_UPSTREAM=f"http://127.0.0.1:{upstream_port}",
                       BENCH_ASGI_CLIENT=self.client)
        return spawn(self.name, cmd, tmp, port, env=env,
                     expected_procs=1 if workers == 1 else workers + 1)


class ProxyPy(Peer):
    name = "proxy.py"
    description = "proxy.py --enable-reverse-proxy"

    def available(self):
        if importlib.util.find_spec("proxy") is None:
            return False, "missing proxy.py"
        try:
            return True, _dist_versions("proxy.py")
        except Exception:  # noqa: BLE001
            return True, "proxy.py"

    def start(self, tmp, workers, upstream_port, variant="plain", routes=0):
        self.check_variant(variant)
        port = free_port()
        cmd = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port),
               "--enable-reverse-proxy", "--plugins",
               "bench.pyproxies.proxypy_reverse.BenchReverseProxy",
               "--num-workers", str(workers), "--num-acceptors", str(workers),
               "--log-level", "e", "--pid-file", os.path.join(tmp, "proxy.pid")]
        env = repo_env(BENCH_UPSTREAM=f"http://127.0.0.1:{upstream_port}", HOME=tmp)
        server = spawn(self.name, cmd, tmp, port, env=env)
        # Its reverse proxy answers one request per client connection and then leaves the
        # connection hanging: load it with a new connection per request.
        server.info["headers"] = {"Connection": "close"}
        server.info["note"] = "Connection: close (no second request on a keep-alive connection)"
        return server


#: every peer, in table order (the anchor first)
ALL_PEERS: list[Peer] = [Nginx(), HAProxy(), Caddy(), Gateway(), AiohttpProxy(),
                         UvicornProxy("httpx"), UvicornProxy("aiohttp"), ProxyPy()]
PEER_NAMES = [p.name for p in ALL_PEERS]


def peer(name: str) -> Peer:
    for p in ALL_PEERS:
        if p.name == name:
            return p
    raise BenchError(f"unknown peer {name!r} (known: {', '.join(PEER_NAMES)})")


__all__ = ["ALL_PEERS", "API_KEY", "AUTH_HEADERS", "NGINX_COMMON", "PEER_NAMES", "Peer",
           "Unsupported", "alternating", "gateway_config", "generated_routes", "make_cert",
           "peer", "route_pattern", "start_nginx_tls_proxy", "start_tls_gateway", "start_tls_peers",
           "start_upstream", "url_of"]
