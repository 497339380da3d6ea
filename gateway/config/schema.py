"""Typed configuration schema (see DESIGN.md, "Configuration contract").

Field names follow Apache APISIX where APISIX has the same concept, so that
users can carry their route/upstream definitions over.

The structs only check what a type can express (types, ranges, enums).
Everything that needs more than one field, or a grammar (addresses, host
names, URI patterns, hash keys), lives in :func:`gateway.config.cross_checks.validate_config`
so that a bad file reports every problem at once instead of the first one
msgspec trips over.

Units: every duration is in seconds (float), every size in bytes (int).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "ActiveCheck",
    "AdminSettings",
    "Checks",
    "Config",
    "Consumer",
    "EtcdStore",
    "GatewaySettings",
    "GlobalRule",
    "GlobalRules",
    "GRPC_SCHEMES",
    "HTTP_METHODS",
    "Keepalive",
    "Node",
    "PassiveCheck",
    "Route",
    "Ssl",
    "SslClient",
    "Timeout",
    "Upstream",
    "UpstreamTls",
]

#: Methods a route may name (APISIX's list).
HTTP_METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "PURGE"}
)

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
# What the runtime keeps in a C int (weights, priorities, pool sizes, retry counts) or an int64
# (byte counts): a larger number is a config error here, not an OverflowError when compiling.
_INT_MAX = 2**31 - 1
Int32 = Annotated[int, msgspec.Meta(ge=-_INT_MAX - 1, le=_INT_MAX)]
NonNegInt32 = Annotated[int, msgspec.Meta(ge=0, le=_INT_MAX)]
PositiveInt32 = Annotated[int, msgspec.Meta(ge=1, le=_INT_MAX)]
ByteCount = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
#: A response status a retry may be asked for: an error (4xx or 5xx).
RetryStatus = Annotated[int, msgspec.Meta(ge=400, le=599)]
PluginMap = dict[str, dict[str, Any]]


class _Struct(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
):
    """Base: immutable so a snapshot shared by the router, the plugins and
    the admin API cannot be changed behind their back; unknown keys are
    errors because a typo ("upsteam_id") must not silently change routing."""


def _set(obj: msgspec.Struct, name: str, value: Any) -> None:
    # Normalisation happens once at construction; the struct is frozen for
    # everybody else afterwards.
    msgspec.structs.force_setattr(obj, name, value)


# --------------------------------------------------------------------------- node


class AdminSettings(_Struct, kw_only=True, frozen=True):
    #: host:port of the Admin API; loopback by default so it is never exposed by accident.
    listen: str = "127.0.0.1:9180"
    #: API key. None or "" = generated once and kept in <state dir>/admin.key (mode 0600).
    key: str | None = None
    #: Client networks (CIDR) allowed to reach the Admin API.
    allow_admin: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    #: Seconds a connection may take to send a request head, the first one included.
    header_timeout: PositiveSeconds = 10.0
    #: Admin connections open at once; more are closed at once, so a flood cannot take the
    #: file descriptors the master needs to supervise its workers.
    max_connections: PositiveInt = 256


class EtcdStore(_Struct, kw_only=True, frozen=True):
    """``gateway.store: {type: etcd, ...}``: routes, upstreams, consumers... live in etcd, one key
    per resource under ``prefix`` (README "etcd mode")."""

    type: Literal["etcd"]
    #: etcd client URLs (http:// or https://); tried in turn when one does not answer.
    endpoints: list[str] = msgspec.field(default_factory=lambda: ["http://127.0.0.1:2379"])
    #: Every key of this gateway's resources starts with it (``/gateway/routes/<id>``).
    prefix: str = "/gateway"
    #: Seconds one request to etcd may take (connect and answer).
    timeout: PositiveSeconds = 3.0
    #: etcd's authentication (``etcdctl user add``); None: etcd without auth.
    user: str | None = None
    password: str | None = None
    #: https endpoints: the CA that signed etcd's certificate (None: the system's), and a client
    #: certificate and key when etcd asks for one.
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: etcd's --experimental-watch-progress-notify-interval: a watch silent for longer than about
    #: twice this is taken for dead and made again.
    progress_interval: PositiveSeconds = 600.0
    #: Where the last good resources read from etcd are kept (a node started while etcd is down
    #: serves them); None: ``etcd-snapshot.json`` in the instance's state directory.
    backup: str | None = None


class Http2Settings(_Struct, kw_only=True, frozen=True):
    #: Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS;
    #: nginx's http2_max_concurrent_streams). A client opening more gets them refused.
    max_concurrent_streams: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] = 128
    #: Bytes of one request's header list as RFC 9113 counts them (names + values + 32 per
    #: field; SETTINGS_MAX_HEADER_LIST_SIZE). Larger requests are answered 431.
    max_header_list_size: Annotated[int, msgspec.Meta(ge=1024, le=2**31 - 1)] = 32768


class GatewaySettings(_Struct, kw_only=True, frozen=True):
    #: Proxy listen addresses, "host:port" or "[v6addr]:port". A single string is accepted.
    listen: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1:9080"])
    #: HTTPS listen addresses (TLS 1.2/1.3, ALPN h2 and http/1.1; certificates from `ssls` by
    #: SNI).
    #: Like `listen`, they change only on restart.
    tls_listen: list[str] = []
    #: The SNI a TLS client that sends none is treated as (APISIX's `fallback_sni`): its
    #: certificate is served. None: such handshakes fail.
    fallback_sni: str | None = None
    #: Worker processes: an int >= 1, or "auto" for one per CPU.
    workers: PositiveInt | Literal["auto"] = "auto"
    admin: AdminSettings = msgspec.field(default_factory=AdminSettings)
    #: Where routes/upstreams/consumers are stored: this file, or etcd (``{type: etcd, ...}``;
    #: ``etcd`` alone: etcd on 127.0.0.1:2379 under /gateway). Changes only on restart.
    store: Literal["file", "etcd"] | EtcdStore = "file"

    @property
    def etcd(self) -> EtcdStore | None:
        """The etcd settings, when the resources live in etcd."""
        if isinstance(self.store, EtcdStore):
            return self.store
        return EtcdStore(type="etcd") if self.store == "etcd" else None

    # Data-plane limits. Defaults follow nginx so behaviour is unsurprising
    # next to it; all times in seconds, all sizes in bytes.
    #: Time allowed to receive the whole request head (nginx client_header_timeout).
    client_header_timeout: PositiveSeconds = 10.0
    #: Max time between two reads of the request body (nginx client_body_timeout).
    client_body_timeout: PositiveSeconds = 60.0
    #: Idle time of a client keep-alive connection; 0 disables keep-alive (nginx keepalive_timeout).
    keepalive_timeout: Seconds = 60.0
    #: Max time between two successful writes to the client (nginx send_timeout).
    send_timeout: PositiveSeconds = 60.0
    #: Max bytes of the request line (nginx large_client_header_buffers size).
    max_request_line: PositiveInt = 8192
    #: Max bytes of the whole request head.
    max_header_size: PositiveInt = 32768
    #: Max number of request header fields.
    max_headers: PositiveInt = 100
    #: Max request body bytes; 0 = unlimited (APISIX's default, unlike nginx's 1 MiB).
    client_max_body_size: ByteCount = 0
    #: Client connections one worker holds at once; 0 = no limit but the file descriptors. At
    #: the limit the worker stops accepting (the kernel's listen backlog holds the next ones,
    #: nothing is refused) and accepts again as soon as one closes (nginx worker_connections).
    max_connections: NonNegInt32 = 0
    #: On SIGTERM, how long in-flight requests may take before workers exit.
    graceful_shutdown_timeout: Seconds = 10.0
    #: Access log: a file path, "stdout", or None for off (off by default: it costs CPU per request).
    access_log: str | None = None
    #: Directory for the persisted last-known-good config; None = the caller picks a default.
    state_dir: str | None = None
    #: Seconds an edited config file must stay unchanged before it is applied, so a writer that
    #: saves in pieces is never applied half-way (SIGHUP applies at once).
    config_settle_time: Seconds = 0.2
    #: Apply the file only when it ends with a `#END` line (APISIX standalone mode's marker), for
    #: writers that cannot write a temp file and rename it.
    require_end_marker: bool = False
    #: Nameservers for the host names in upstream nodes, "ip" or "ip:port" ("[v6]:port");
    #: empty = the system's (/etc/resolv.conf). /etc/hosts is read first either way.
    resolvers: list[str] = msgspec.field(default_factory=list)
    #: HTTP/2 (over TLS by ALPN, h2c on `listen`): per-connection limits.
    http2: Http2Settings = msgspec.field(default_factory=Http2Settings)


# ----------------------------------------------------------------------- upstream


class Node(_Struct, kw_only=True, frozen=True):
    host: str
    port: Port
    #: 0 keeps the node defined but sends it no traffic.
    weight: NonNegInt32 = 1
    #: Higher priority nodes are used first; lower ones only when those are down (APISIX).
    priority: Int32 = 0


class Timeout(_Struct, kw_only=True, frozen=True):
    connect: PositiveSeconds = 6.0
    send: PositiveSeconds = 60.0
    read: PositiveSeconds = 60.0


class Keepalive(_Struct, kw_only=True, frozen=True):
    #: Idle connections kept per upstream per worker.
    size: NonNegInt32 = 320
    #: Seconds an idle pooled connection is kept.
    idle_timeout: Seconds = 60.0
    #: Requests served on one upstream connection before it is closed.
    requests: PositiveInt32 = 1000


HttpStatus = Annotated[int, msgspec.Meta(ge=200, le=599)]
#: How many consecutive outcomes change an active check's verdict (APISIX: 1..254).
ActiveCount = Annotated[int, msgspec.Meta(ge=1, le=254)]
#: The same for passive checks; 0 = this kind of outcome never changes the state.
PassiveCount = Annotated[int, msgspec.Meta(ge=0, le=254)]


class ActiveHealthy(_Struct, kw_only=True, frozen=True):
    #: Seconds between checks of a healthy node.
    interval: PositiveSeconds = 1.0
    #: Consecutive healthy answers that bring a down node back.
    successes: ActiveCount = 2
    http_statuses: list[HttpStatus] = msgspec.field(default_factory=lambda: [200, 302])


class ActiveUnhealthy(_Struct, kw_only=True, frozen=True):
    #: Seconds between checks of a down node.
    interval: PositiveSeconds = 1.0
    #: Consecutive answers with a status listed here that mark a node down.
    http_failures: ActiveCount = 5
    #: Consecutive refused or reset connections that mark a node down.
    tcp_failures: ActiveCount = 2
    #: Consecutive checks without an answer within `timeout` that mark a node down.
    timeouts: ActiveCount = 3
    http_statuses: list[HttpStatus] = msgspec.field(
        default_factory=lambda: [429, 404, 500, 501, 502, 503, 504, 505])


class ActiveCheck(_Struct, kw_only=True, frozen=True):
    """Probes run by the master, once per node whatever the number of workers."""
    #: http / https: a GET of `http_path` and its status; tcp: a connection is enough.
    type: Literal["http", "https", "tcp"] = "http"
    #: Seconds a check may take (connect, send, status line).
    timeout: PositiveSeconds = 1.0
    #: Accepted for APISIX compatibility: each node has its own check task here.
    concurrency: PositiveInt = 10
    http_path: str = "/"
    #: Host header of the check (default: the node's host).
    host: str | None = None
    #: Port to check instead of the node's.
    port: Port | None = None
    https_verify_certificate: bool = True
    #: Extra request headers, "Name: value" each.
    req_headers: list[str] | None = None
    healthy: ActiveHealthy = msgspec.field(default_factory=ActiveHealthy)
    unhealthy: ActiveUnhealthy = msgspec.field(default_factory=ActiveUnhealthy)


class PassiveHealthy(_Struct, kw_only=True, frozen=True):
    http_statuses: list[HttpStatus] = msgspec.field(default_factory=lambda: [
        200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
        300, 301, 302, 303, 304, 305, 306, 307, 308])
    #: Consecutive healthy responses that bring a down node back (0: only active checks do).
    successes: PassiveCount = 5


class PassiveUnhealthy(_Struct, kw_only=True, frozen=True):
    http_statuses: list[HttpStatus] = msgspec.field(default_factory=lambda: [429, 500, 503])
    http_failures: PassiveCount = 5
    tcp_failures: PassiveCount = 2
    timeouts: PassiveCount = 7


class PassiveCheck(_Struct, kw_only=True, frozen=True):
    """Outcomes of real requests, counted by every worker into the node's shared state."""
    type: Literal["http"] = "http"
    healthy: PassiveHealthy = msgspec.field(default_factory=PassiveHealthy)
    unhealthy: PassiveUnhealthy = msgspec.field(default_factory=PassiveUnhealthy)


class Checks(_Struct, kw_only=True, frozen=True):
    """APISIX's `checks`. `active` is required: passive checks can mark a node down but only
    traffic could bring it back, and a down node gets none."""
    active: ActiveCheck | None = None
    passive: PassiveCheck | None = None
    #: When every node is down: true tries them anyway (APISIX's behaviour), false answers 502
    #: at once without sending the request anywhere.
    fail_open: bool = True


#: The upstream schemes proxied as gRPC (HTTP/2 end to end, trailers relayed).
GRPC_SCHEMES = frozenset({"grpc", "grpcs"})


class UpstreamTls(_Struct, kw_only=True, frozen=True):
    """APISIX's upstream `tls` (for `scheme: https` and `grpcs`). Paths are relative to the config file,
    or the PEM is given inline; the loader reads and checks them."""
    #: Client certificate (chain) presented to the nodes (mTLS to the upstream).
    client_cert: str | None = None
    #: Its private key (unencrypted); required with `client_cert`.
    client_key: str | None = None
    #: Verify the nodes' certificates and names. On by default (APISIX's default is off);
    #: false turns verification off explicitly.
    verify: bool = True
    #: CA certificates the nodes' certificates must chain to (our addition; APISIX uses a
    #: global trusted CA). None = the system's trust store.
    ca: str | None = None


class Upstream(_Struct, kw_only=True, frozen=True):
    #: None only for an upstream given inline in a route.
    id: str | None = None
    name: str | None = None
    desc: str | None = None
    type: Literal["roundrobin", "least_conn", "chash", "ewma"] = "roundrobin"
    #: chash only: what `key` names (APISIX semantics).
    hash_on: Literal["vars", "header", "cookie", "consumer", "vars_combinations"] = "vars"
    #: chash only: a request variable (gateway.requestvars), e.g. "remote_addr", "uri", "arg_x",
    #: "http_x", "cookie_x", "consumer_name"; with vars_combinations, text with "$var"s.
    key: str | None = None
    nodes: list[Node]
    timeout: Timeout = msgspec.field(default_factory=Timeout)
    #: Tries on another node after a failed one; None = number of nodes - 1 (APISIX's
    #: default), 0 = no retry. A failed or timed-out connect, and a connection closed, reset or
    #: timed out before any response byte, are retried; so are the statuses in
    #: `retry_on_statuses`. Only while nothing reached the client, and once a request reached an
    #: upstream only if it can be sent again safely (README, "Retries").
    retries: NonNegInt32 | None = None
    #: Seconds from the first try after which no new try starts (nginx's
    #: proxy_next_upstream_timeout); None or 0 = no limit. A try under way keeps its timeouts.
    retry_timeout: Seconds | None = None
    #: Upstream response statuses that are retried on another node instead of forwarded
    #: (e.g. [502, 503, 504]); none by default. The retried response is discarded unread.
    retry_on_statuses: list[RetryStatus] = []
    keepalive: Keepalive = msgspec.field(default_factory=Keepalive)
    #: https: TLS to the nodes (SNI: the node's host name, or `upstream_host` with
    #: pass_host rewrite), see `tls`. grpc: gRPC over cleartext HTTP/2 (h2c, prior knowledge);
    #: grpcs: gRPC over TLS with ALPN h2, with the same `tls` settings as https (APISIX's names).
    scheme: Literal["http", "https", "grpc", "grpcs"] = "http"
    #: TLS settings for scheme https and grpcs (verification, CA, client certificate).
    tls: UpstreamTls | None = None
    #: Host header sent upstream: the client's, the node's, or `upstream_host`.
    pass_host: Literal["pass", "node", "rewrite"] = "pass"
    upstream_host: str | None = None
    #: Health checks (APISIX's `checks`); None = every node is always taken as healthy.
    checks: Checks | None = None

    @property
    def effective_retries(self) -> int:
        """Retries to use at run time, with APISIX's default applied."""
        if self.retries is not None:
            return self.retries
        return max(len(self.nodes) - 1, 0)


# -------------------------------------------------------------------------- route


class Route(_Struct, kw_only=True, frozen=True):
    id: str
    name: str | None = None
    desc: str | None = None
    #: Path pattern: exact "/a/b", parameters "/users/:id", prefix "/static/*".
    uri: str | None = None
    uris: list[str] | None = None
    #: Host names (lowercased); "*.example.com" matches any subdomain. No ports.
    host: str | None = None
    hosts: list[str] | None = None
    #: Uppercased; None = every method.
    methods: list[str] | None = None
    #: Higher wins when several routes match.
    priority: Int32 = 0
    upstream_id: str | None = None
    upstream: Upstream | None = None
    plugins: PluginMap = {}
    #: 1 = enabled, 0 = disabled (kept in config, not routed), as in APISIX.
    status: Literal[0, 1] = 1
    enable_websocket: bool = False
    #: Overrides the upstream's timeouts for this route.
    timeout: Timeout | None = None

    def __post_init__(self) -> None:
        # Host names and methods are case-insensitive on the wire; normalising
        # once here lets the router compare bytes without folding per request.
        if self.host is not None:
            _set(self, "host", self.host.lower())
        if self.hosts is not None:
            _set(self, "hosts", [h.lower() for h in self.hosts])
        if self.methods is not None:
            _set(self, "methods", [m.upper() for m in self.methods])

    @property
    def paths(self) -> list[str]:
        """The route's URI patterns whichever of `uri`/`uris` was used."""
        if self.uris is not None:
            return list(self.uris)
        return [self.uri] if self.uri is not None else []

    @property
    def host_list(self) -> list[str]:
        """The route's host patterns whichever of `host`/`hosts` was used; [] = any host."""
        if self.hosts is not None:
            return list(self.hosts)
        return [self.host] if self.host is not None else []


# ---------------------------------------------------------------------- consumers


class Consumer(_Struct, kw_only=True, frozen=True):
    username: str
    desc: str | None = None
    group_id: str | None = None
    labels: dict[str, str] = {}
    plugins: PluginMap = {}


class GlobalRules(_Struct, kw_only=True, frozen=True):
    """The one-rule form, ``global_rules: {plugins: {...}}``; the Admin API shows it as the rule
    with id "1"."""
    #: Plugins run on every route.
    plugins: PluginMap = {}


class GlobalRule(_Struct, kw_only=True, frozen=True):
    """One of APISIX's ``global_rules`` (the list form; ``/apisix/admin/global_rules/{id}``)."""
    id: str
    #: Plugins run on every route; a plugin may appear in one rule only.
    plugins: PluginMap = {}


# ---------------------------------------------------------------------------- tls


class SslClient(_Struct, kw_only=True, frozen=True):
    #: CA certificates client certificates must chain to: a path, or the PEM inline.
    ca: str


class Ssl(_Struct, kw_only=True, frozen=True):
    """APISIX's ssl resource: a certificate and key served for the SNIs it names."""

    id: str
    #: Server names: exact ("api.example.com") or wildcard ("*.example.com"); exact wins.
    snis: list[str]
    #: The certificate (chain): a path (relative to the config file) or the PEM inline. The
    #: loader reads paths, so a validated config carries the PEM and a reload picks up a file
    #: replaced under the same name.
    cert: str
    #: The private key (unencrypted), a path or the PEM inline.
    key: str
    #: Ask for and verify client certificates for these SNIs (mTLS).
    client: SslClient | None = None


# ------------------------------------------------------------------------- config

# Deterministic key order makes the encoding canonical, so equal configs hash equal.
_canonical_encoder = msgspec.json.Encoder(order="deterministic")


class Config(_Struct, kw_only=True, frozen=True):
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    upstreams: list[Upstream] = []
    routes: list[Route] = []
    consumers: list[Consumer] = []
    #: APISIX's list of rules, or one rule's ``{plugins: {...}}``.
    global_rules: GlobalRules | list[GlobalRule] = msgspec.field(default_factory=GlobalRules)
    ssls: list[Ssl] = []
    #: Settings shared by every instance of a plugin, by plugin name (APISIX's plugin_metadata).
    plugin_metadata: dict[str, dict[str, Any]] = {}

    @property
    def global_rule_list(self) -> list[GlobalRule]:
        """The global rules in the list form, whichever form the document used."""
        if isinstance(self.global_rules, GlobalRules):
            return [GlobalRule(id="1", plugins=self.global_rules.plugins)] if self.global_rules.plugins else []
        return list(self.global_rules)

    @property
    def global_plugins(self) -> PluginMap:
        """Every global rule's plugins, as one map (a plugin is in one rule at most)."""
        if isinstance(self.global_rules, GlobalRules):
            return self.global_rules.plugins
        merged: PluginMap = {}
        for rule in self.global_rules:
            merged.update(rule.plugins)
        return merged

    def upstream_by_id(self) -> dict[str, Upstream]:
        """Top-level upstreams keyed by id (ids are unique in a validated config)."""
        return {u.id: u for u in self.upstreams if u.id is not None}

    def fingerprint(self) -> str:
        """Config version identity: sha256 hex of the canonical JSON encoding.

        Independent of YAML formatting, comments and key order, so a reload
        of an unchanged file is recognised as a no-op.
        """
        return hashlib.sha256(_canonical_encoder.encode(self)).hexdigest()
