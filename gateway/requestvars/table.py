"""The one table of request variables: APISIX's names (``core/ctx.lua``) with nginx's meanings.

Every name a config may give — a ``vars`` expression, a ``$var`` in a template, a limit key, a
chash key — is looked up here once, when the config loads, and turned into a getter: a plain
function of the request. A request therefore pays only for the variables its plugins name, and
an unknown name is a config error rather than a value that is silently empty.

Values are what nginx would give, as text, or None when nginx's variable would be empty because
the thing does not exist (no such header, argument or cookie, no consumer, no response yet):

``host``              the host of the request (Host header) without the port, lowercased
``http_host``         the Host header as sent (with the port)
``uri``               the normalised path, without the query (nginx ``$uri``)
``request_uri``       the request target exactly as sent, with the query
``args`` / ``query_string``  the query string; ``is_args`` "?" when there is one, else ""
``arg_<name>``        a query argument, decoded (a repeated one: its last value, as
                      ``ctx.args`` gives it; nginx gives the first)
``http_<name>``       a request header; ``_`` in the name is read as ``-`` (``http_x_api_key``
                      is ``X-Api-Key``); repeated headers joined with ", "
``cookie_<name>``     a cookie
``remote_addr`` / ``remote_port``  the client's address and port
``server_addr`` / ``server_port``  the address and port that accepted the connection
``scheme``            "http", or "https" on a TLS connection
``ssl_server_name``   the server name (SNI) the TLS client sent; ``ssl_protocol`` "TLSv1.2" or
                      "TLSv1.3"; ``ssl_cipher`` the cipher suite (None on plain HTTP)
``ssl_client_s_dn`` / ``ssl_client_i_dn``  the verified client certificate's subject and
                      issuer, RFC 4514 ("CN=alice,O=Shop", nginx's format); ``ssl_client_verify``
                      "SUCCESS" with one, "NONE" without (None on plain HTTP)
``request_method``    the method; ``server_protocol`` "HTTP/1.1" or "HTTP/1.0"
``request_id``        the request's id: the one the request-id plugin took or made when it
                      ran, else 32 random hex digits made on first use (nginx's
                      ``$request_id``); either way one value per request for every reader
``route_id``          the matched route's id
``consumer_name``     the authenticated consumer (``consumer`` is the same variable, the name
                      the DESIGN examples use); ``consumer_group_id`` its group
``hostname``          the machine's host name
``status``            the response status (header_filter and log phases)
``upstream_addr``     the node a request went to ("host:port"), None before one was chosen
``upstream_status``   the status the upstream answered (or 502/504 when it could not be
                      reached), None when the request never reached one
``sent_http_<name>`` / ``upstream_http_<name>``  a response header (header_filter and log)
``request_time``      seconds since the request arrived, millisecond resolution
``upstream_response_time``  seconds from the start of the try (its connect, or a pooled
                      connection taken) to the response head
                      A retried request has one entry per try in these three, nginx's way:
                      ``"127.0.0.1:8001, 127.0.0.1:8002"``, ``"502, 200"``, ``"0.001, 0.004"``
``bytes_sent`` / ``request_length``  body bytes sent to the client, bytes received

A plugin adds its own with :func:`register_var` (APISIX's ``core.ctx.register_var``).
"""
from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from cryptography import x509

__all__ = [
    "Getter",
    "RequestView",
    "TlsView",
    "is_variable",
    "register_var",
    "to_text",
    "unregister_var",
    "var_getter",
    "variable_names",
]


class TlsView(Protocol):
    """What variables read of a request's TLS connection (``gateway._proto.TlsSession``)."""

    @property
    def server_name(self) -> str | None: ...
    @property
    def protocol(self) -> str | None: ...
    @property
    def cipher(self) -> str | None: ...
    @property
    def client_cert(self) -> bytes | None: ...


class RequestView(Protocol):
    """What variables read of a request: the read side of the plugin context
    (``gateway.plugins.Context``, implemented by ``gateway._proto.Exchange``)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def raw_target(self) -> bytes: ...
    @property
    def query_string(self) -> str: ...
    @property
    def args(self) -> dict[str, str]: ...
    @property
    def host(self) -> str: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def cookies(self) -> dict[str, str]: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def client_port(self) -> int: ...
    @property
    def server_addr(self) -> str | None: ...
    @property
    def server_port(self) -> int | None: ...
    @property
    def scheme(self) -> str: ...
    @property
    def tls(self) -> TlsView | None: ...
    @property
    def route_id(self) -> str | None: ...
    @property
    def http_version(self) -> str: ...
    @property
    def consumer(self) -> Any: ...
    @property
    def state(self) -> dict[Any, Any]:
        """Per-request plugin state: a dict the plugins of one request share (``request_id``
        keeps the request's id there)."""
    @property
    def status(self) -> int: ...
    @property
    def upstream_status(self) -> int: ...
    @property
    def response_headers(self) -> list[list[str]] | None: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def upstream_latency(self) -> float: ...
    @property
    def upstream_addr(self) -> str | None:
        """The node of the request's (last) try as "host:port"."""
    @property
    def previous_tries(self) -> Sequence[tuple[str, int, float]] | None:
        """(address, status, seconds) of each try before the last; None without a retry."""
    @property
    def bytes_sent(self) -> int: ...
    @property
    def request_bytes(self) -> int: ...


#: A variable's getter: the request -> its value (text, a number, a list of text for ``has``),
#: None when the variable is empty for this request.
Getter = Callable[[RequestView], Any]

#: Variable names as they appear in templates (``$name``) and expressions.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: What may follow a family's prefix: header, argument and cookie names as configs write them.
_MEMBER = re.compile(r"[A-Za-z0-9_.\-]+\Z")

#: The per-request state key under which the request id lives (the request-id plugin writes it).
REQUEST_ID_KEY = "request_id"


def to_text(value: Any) -> str:
    """A variable's value as text, the way nginx variables are text: booleans as
    "true"/"false" (JSON's spelling, as in APISIX), whole floats without ".0", lists joined
    with ", "."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(to_text(item) for item in value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


# -- getters of the built-in variables ------------------------------------------------------

def _host(ctx: RequestView) -> str:
    """nginx's $host: the Host header without its port, lowercased ("" without a Host)."""
    host = ctx.host
    if host.startswith("["):  # an IPv6 literal keeps its brackets, as in nginx
        return host[:host.find("]") + 1].lower()
    return host.partition(":")[0].lower()


def _http_host(ctx: RequestView) -> str | None:
    return ctx.host or None


def _uri(ctx: RequestView) -> str:
    return ctx.path


def _request_uri(ctx: RequestView) -> str:
    return ctx.raw_target.decode("latin-1")


def _args(ctx: RequestView) -> str:
    return ctx.query_string


def _is_args(ctx: RequestView) -> str:
    return "?" if ctx.query_string else ""


def _remote_addr(ctx: RequestView) -> str:
    return ctx.client_ip


def _remote_port(ctx: RequestView) -> str:
    return str(ctx.client_port)


def _server_addr(ctx: RequestView) -> str | None:
    return ctx.server_addr


def _server_port(ctx: RequestView) -> str | None:
    port = ctx.server_port
    return None if port is None else str(port)


def _scheme(ctx: RequestView) -> str:
    return ctx.scheme


def _ssl_server_name(ctx: RequestView) -> str | None:
    tls = ctx.tls
    return tls.server_name if tls is not None else None


def _ssl_protocol(ctx: RequestView) -> str | None:
    tls = ctx.tls
    return tls.protocol if tls is not None else None


def _ssl_cipher(ctx: RequestView) -> str | None:
    tls = ctx.tls
    return tls.cipher if tls is not None else None


def _client_certificate(ctx: RequestView) -> x509.Certificate | None:
    tls = ctx.tls
    der = tls.client_cert if tls is not None else None
    return x509.load_der_x509_certificate(der) if der else None


def _ssl_client_s_dn(ctx: RequestView) -> str | None:
    cert = _client_certificate(ctx)
    return cert.subject.rfc4514_string() if cert is not None else None


def _ssl_client_i_dn(ctx: RequestView) -> str | None:
    cert = _client_certificate(ctx)
    return cert.issuer.rfc4514_string() if cert is not None else None


def _ssl_client_verify(ctx: RequestView) -> str | None:
    tls = ctx.tls
    if tls is None:
        return None
    return "SUCCESS" if tls.client_cert else "NONE"


def _request_method(ctx: RequestView) -> str:
    return ctx.method


def _server_protocol(ctx: RequestView) -> str:
    return "HTTP/" + ctx.http_version


def _request_id(ctx: RequestView) -> str:
    state = ctx.state
    request_id = state.get(REQUEST_ID_KEY)
    if request_id is None:
        request_id = state[REQUEST_ID_KEY] = secrets.token_hex(16)
    return str(request_id)


def _route_id(ctx: RequestView) -> str | None:
    return ctx.route_id


def _consumer_name(ctx: RequestView) -> str | None:
    consumer = ctx.consumer
    return consumer.username if consumer is not None else None


def _consumer_group_id(ctx: RequestView) -> str | None:
    consumer = ctx.consumer
    return consumer.group_id if consumer is not None else None


_HOSTNAME = socket.gethostname()


def _hostname(ctx: RequestView) -> str:
    return _HOSTNAME


def _status(ctx: RequestView) -> str | None:
    status = ctx.status
    return str(status) if status else None


def _per_try(earlier: Sequence[str], last: str | None) -> str | None:
    """One entry per try, nginx's "a, b" form (the last try has none if it never ended)."""
    if last is None:
        return ", ".join(earlier) if earlier else None
    return ", ".join([*earlier, last])


def _upstream_addr(ctx: RequestView) -> str | None:
    earlier = ctx.previous_tries
    if earlier is None:
        return ctx.upstream_addr
    return _per_try([t[0] for t in earlier], ctx.upstream_addr)


def _upstream_status(ctx: RequestView) -> str | None:
    status = ctx.upstream_status
    earlier = ctx.previous_tries
    if earlier is None:
        return str(status) if status else None
    return _per_try([str(t[1]) for t in earlier], str(status) if status else None)


def _request_time(ctx: RequestView) -> str:
    return f"{ctx.elapsed:.3f}"


def _upstream_response_time(ctx: RequestView) -> str | None:
    latency = ctx.upstream_latency
    earlier = ctx.previous_tries
    if earlier is None:
        return f"{latency:.3f}" if ctx.upstream_status else None
    return _per_try([f"{t[2]:.3f}" for t in earlier],
                    f"{latency:.3f}" if ctx.upstream_status else None)


def _bytes_sent(ctx: RequestView) -> str:
    return str(ctx.bytes_sent)


def _request_length(ctx: RequestView) -> str:
    return str(ctx.request_bytes)


_BUILTIN: dict[str, Getter] = {
    "host": _host,
    "http_host": _http_host,
    "uri": _uri,
    "request_uri": _request_uri,
    "args": _args,
    "query_string": _args,
    "is_args": _is_args,
    "remote_addr": _remote_addr,
    "remote_port": _remote_port,
    "server_addr": _server_addr,
    "server_port": _server_port,
    "scheme": _scheme,
    "ssl_server_name": _ssl_server_name,
    "ssl_protocol": _ssl_protocol,
    "ssl_cipher": _ssl_cipher,
    "ssl_client_s_dn": _ssl_client_s_dn,
    "ssl_client_i_dn": _ssl_client_i_dn,
    "ssl_client_verify": _ssl_client_verify,
    "request_method": _request_method,
    "server_protocol": _server_protocol,
    "request_id": _request_id,
    "route_id": _route_id,
    "consumer_name": _consumer_name,
    "consumer": _consumer_name,
    "consumer_group_id": _consumer_group_id,
    "hostname": _hostname,
    "status": _status,
    "upstream_addr": _upstream_addr,
    "upstream_status": _upstream_status,
    "request_time": _request_time,
    "upstream_response_time": _upstream_response_time,
    "bytes_sent": _bytes_sent,
    "request_length": _request_length,
}


# -- the families: a prefix and the rest of the name ----------------------------------------

def _query_arg(name: str) -> Getter:
    def get(ctx: RequestView) -> str | None:
        return ctx.args.get(name) if ctx.query_string else None
    return get


def _request_header(name: str) -> Getter:
    def get(ctx: RequestView) -> str | None:
        return ctx.headers.get(name)
    return get


def _cookie(name: str) -> Getter:
    def get(ctx: RequestView) -> str | None:
        return ctx.cookies.get(name)
    return get


def _response_header(name: str) -> Getter:
    def get(ctx: RequestView) -> str | None:
        headers = ctx.response_headers
        if not headers:
            return None
        values = [value for key, value in headers if key.lower() == name]
        return ", ".join(values) if values else None
    return get


def _header_name(rest: str) -> str:
    return rest.replace("_", "-").lower()


def _as_is(rest: str) -> str:
    return rest


#: prefix -> (how the rest of the name becomes the key, getter factory); longest prefix first,
#: so ``sent_http_x`` is not read as ``http_...``.
_FAMILIES: tuple[tuple[str, Callable[[str], str], Callable[[str], Getter]], ...] = (
    ("upstream_http_", _header_name, _response_header),
    ("sent_http_", _header_name, _response_header),
    ("cookie_", _as_is, _cookie),
    ("http_", _header_name, _request_header),
    ("arg_", _as_is, _query_arg),
)


# -- variables added by plugins ---------------------------------------------------------------

_REGISTERED: dict[str, Getter] = {}


def register_var(name: str, getter: Getter) -> None:
    """Adds variable ``name`` for every ``vars`` expression, template and key that names it
    (APISIX's ``core.ctx.register_var``). Call it when the plugin's module is imported, so the
    name is known before any config that uses it is checked. ``getter(ctx)`` returns the value
    (text, a number, or a list for ``has``) or None; it runs each time the variable is read,
    so it should be cheap or keep what it computes in ``ctx.state``.

    A built-in name or one of the families (``http_...``, ``arg_...``, ...) cannot be
    replaced: its meaning is nginx's. Registering a name again replaces the earlier getter.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid variable name {name!r}: letters, digits and _, not starting "
                         "with a digit")
    if name in _BUILTIN or any(name.startswith(prefix) for prefix, _, _ in _FAMILIES):
        raise ValueError(f"variable '{name}' is built in and cannot be replaced")
    if not callable(getter):
        raise TypeError(f"the getter of variable '{name}' must be callable")
    _REGISTERED[name] = getter


def unregister_var(name: str) -> None:
    """Removes a variable added by :func:`register_var` (for tests and plugin unloading).
    Getters already resolved from it keep working."""
    _REGISTERED.pop(name, None)


def _family(name: str) -> tuple[str, Callable[[str], str], Callable[[str], Getter]] | None:
    for family in _FAMILIES:
        if name.startswith(family[0]) and _MEMBER.match(name, len(family[0])):
            return family
    return None


# -- lookups ------------------------------------------------------------------------------------

def var_getter(name: str) -> Getter:
    """The getter of variable ``name``; ValueError naming the known ones when there is none."""
    getter = _BUILTIN.get(name) or _REGISTERED.get(name)
    if getter is not None:
        return getter
    family = _family(name)
    if family is not None:
        prefix, key, factory = family
        return factory(key(name[len(prefix):]))
    raise ValueError(f"unknown variable '{name}' (known: {', '.join(variable_names())}, and "
                     f"{', '.join(p + '<name>' for p, _, _ in reversed(_FAMILIES))})")


def is_variable(name: str) -> bool:
    """Whether ``name`` is a variable (built in, a family member, or registered)."""
    return name in _BUILTIN or name in _REGISTERED or _family(name) is not None


def variable_names() -> list[str]:
    """The names of the built-in and registered variables (not the families), sorted."""
    return sorted({*_BUILTIN, *_REGISTERED})


def builtin_getters() -> Mapping[str, Getter]:
    """The built-in variables by name (read only), for documentation and tests."""
    return dict(_BUILTIN)


def families() -> Sequence[str]:
    """The prefixes of the variable families (``http_``, ``arg_``, ...)."""
    return tuple(prefix for prefix, _, _ in _FAMILIES)
